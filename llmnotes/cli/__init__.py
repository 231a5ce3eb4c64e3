"""The ``llmnotes`` command (also ``python -m llmnotes``).

Each subcommand has its own module here, ``llmnotes/cli/<name>.py``, with two functions:
``add_<name>_arguments(parser)`` and ``run_<name>(args) -> int`` (``build-index``:
``build_index``). The library modules hold no command-line code. This file only wires them up,
importing a module when its subcommand is asked for, so ``llmnotes --help`` stays fast, and
turns the errors a user can fix into one line (a bug keeps its traceback).
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "tokenize": ("llmnotes.cli.tokenize", "train a tokenizer or encode text into a uint16 token file"),
    "train": ("llmnotes.cli.train", "pretrain a GPT on a text file or token file"),
    "sample": ("llmnotes.cli.sample", "generate text from a model (a shipped name or a directory)"),
    "quantize": ("llmnotes.cli.quantize", "quantize a model and report its size and perplexity"),
    "export": ("llmnotes.cli.export", "export a model to GGUF for llama.cpp"),
    "serve": ("llmnotes.cli.serve", "serve a model over an OpenAI-compatible HTTP API"),
    "finetune": ("llmnotes.cli.finetune", "finetune a model (classify, instruct, dpo; optional LoRA)"),
    "ask": ("llmnotes.cli.ask", "answer a question from the site's docs, with sources"),
    "build-index": ("llmnotes.cli.build_index", "chunk the site's docs into the snapshot `ask` searches"),
}


def _py(command: str) -> str:
    """The Python name of a command: ``build-index`` -> ``build_index``."""
    return command.replace("-", "_")


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
            getattr(module, f"add_{_py(name)}_arguments")(p)
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
        return int(getattr(module, f"run_{_py(args.command)}")(args) or 0)
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


# What a user can cause and fix: bad values (ValueError), missing, unusable or full paths
# (OSError, FileNotFoundError among them), a model too big for memory, a run that diverged
# (TrainingDiverged). TypeError, AttributeError, KeyError... are deliberately absent: here they
# mean a bug, and a bug keeps its traceback.
USER_ERRORS = (ValueError, OSError, MemoryError)


def is_user_error(err: BaseException) -> bool:
    """True for errors the user caused (bad input, a diverged run), which print as one line."""
    from llmnotes.train import TrainingDiverged

    return isinstance(err, (*USER_ERRORS, TrainingDiverged))


def one_line(err: BaseException) -> str:
    """The error's message on one line (a multi-line message would look like a traceback)."""
    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, MemoryError):
        text = f"out of memory ({text}); use a smaller model, batch or context"
    return text

if __name__ == "__main__":
    sys.exit(main())
