"""``llmnotes serve``: serve a model over an OpenAI-compatible HTTP API until Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import os

from llmnotes.cli.common import add_config_arguments, add_device_argument, add_model_argument, config_from_args
from llmnotes.serve import ServeConfig, create_app, load_model

log = logging.getLogger("llmnotes.serve")


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``llmnotes serve``: the model and the socket, then one flag per ``ServeConfig``
    field (derived from the dataclass, help from its docs)."""
    from llmnotes.quantize import METHODS

    add_model_argument(parser, default=None)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    parser.add_argument("--api-key", action="append", default=None, metavar="KEY",
                        help="require 'Authorization: Bearer KEY' (repeat for several keys; "
                             "default: $LLMNOTES_API_KEY if set, else no authentication)")
    parser.add_argument("--model-name", default=None, help="name clients use (default: the directory's name)")
    parser.add_argument("--quantize", choices=list(METHODS), default=None,
                        help="quantize the float model's linear layers after loading (llm.int8 and gptq "
                             "calibrate on the shipped corpus); a quantized --model needs none")
    add_device_argument(parser)
    limits = parser.add_argument_group("limits and caches (ServeConfig)")
    parser.set_defaults(config_fields=add_config_arguments(
        limits, ServeConfig, extra={"rate_limit": {"metavar": "RPS"}}))


def run_serve(args: argparse.Namespace) -> int:
    """``llmnotes serve``: load the model and serve it until Ctrl-C."""
    import uvicorn

    if not 0 < args.port < 65536:
        raise ValueError(f"--port must be in 1..65535, got {args.port}")
    keys = args.api_key or ([os.environ["LLMNOTES_API_KEY"]] if os.environ.get("LLMNOTES_API_KEY") else None)
    model, tokenizer, name = load_model(args.model, args.device, args.quantize)
    options = vars(config_from_args(args, ServeConfig, args.config_fields))  # validated here, once
    app = create_app(model, tokenizer, model_name=args.model_name or name, api_key=keys, **options)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.host not in ("127.0.0.1", "localhost", "::1") and not keys:
        log.warning("serving on %s without --api-key: anyone who can reach this port can use the model",
                    args.host)
    print(f"serving {app.title} model {args.model_name or name!r} on http://{args.host}:{args.port} "
          f"(chat page at /, API at /v1)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
