"""The ``llmnotes`` command (also ``python -m llmnotes``).

Each subcommand lives in the module that implements its concept, which provides two functions:
``add_<name>_arguments(parser)`` and ``run_<name>(args) -> int``. This file only wires them up,
importing a module when its subcommand is asked for, so ``llmnotes --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "tokenize": ("llmnotes.data", "train a tokenizer or encode text into a uint16 token file"),
    "train": ("llmnotes.train", "pretrain a GPT on a text file or token file"),
    "sample": ("llmnotes.sampling", "generate text from a model directory"),
    "quantize": ("llmnotes.quantize", "quantize a model and report its size and perplexity"),
    "export": ("llmnotes.gguf", "export a model to GGUF for llama.cpp"),
    "serve": ("llmnotes.serve", "serve a model over an OpenAI-compatible HTTP API"),
    "finetune": ("llmnotes.finetune", "finetune a model (classify, instruct, dpo; optional LoRA)"),
    "ask": ("llmnotes.rag", "answer a question from the site's docs, with sources"),
}


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llmnotes", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = None
    if argv:
        wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        # Only the chosen subcommand's module is imported to define its arguments.
        if name == wanted:
            module = importlib.import_module(module_name)
            getattr(module, f"add_{name}_arguments")(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return int(getattr(module, f"run_{args.command}")(args) or 0)
    except KeyboardInterrupt as err:
        # Ctrl-C: one line and the shell's conventional 128 + SIGINT. A command that keeps
        # something (train's last checkpoint) says so in the message it re-raises with.
        detail = f": {one_line(err)}" if str(err) else ""
        print(f"llmnotes {args.command}: interrupted{detail}", file=sys.stderr)
        return 130
    except Exception as err:
        if not is_user_error(err):
            raise  # a programming error keeps its traceback
        print(f"llmnotes {args.command}: error: {one_line(err)}", file=sys.stderr)
        return 2


# What a user can cause and fix: bad values, missing, unusable or full paths (OSError), a model
# too big for memory, a run that diverged. TypeError is deliberately absent: here it means a bug,
# and a bug keeps its traceback.
USER_ERRORS = (ValueError, OSError, MemoryError)


def is_user_error(err: BaseException) -> bool:
    """True for errors the user caused (bad input, a diverged run), which print as one line."""
    return isinstance(err, USER_ERRORS) or type(err).__name__ == "TrainingDiverged"


def one_line(err: BaseException) -> str:
    """The error's message on one line (a multi-line message would look like a traceback)."""
    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, MemoryError):
        text = f"out of memory ({text}); use a smaller model, batch or context"
    return text

if __name__ == "__main__":
    sys.exit(main())
