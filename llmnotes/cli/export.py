"""``llmnotes export``: write a model as a GGUF file for llama.cpp."""

from __future__ import annotations

from llmnotes.cli.common import add_device_argument, add_model_argument, load_model
from llmnotes.convert.gguf import QTYPES, export_gguf


def add_export_arguments(p) -> None:
    add_model_argument(p, what="the model to export (a quantized one is written from its dequantized weights): ")
    p.add_argument("--out", required=True, help="the .gguf file to write")
    p.add_argument("--qtype", default="F16", choices=list(QTYPES))
    add_device_argument(p)


def run_export(args) -> int:
    from llmnotes.pretrained import pretrained_dir
    from llmnotes.utils import check_output_path

    inputs = [f for f in pretrained_dir(args.model).iterdir()]
    check_output_path(args.out, inputs=inputs)  # before loading: a bad --out fails at once
    model, tokenizer = load_model(args.model, args.device)
    path = export_gguf(model, tokenizer, args.out, args.qtype)
    print(f"wrote {path} ({path.stat().st_size:,} bytes, {args.qtype})")
    print(f'run it: llama-cli -m {path} -p "Once upon a time" -n 64')
    return 0
