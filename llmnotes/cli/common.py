"""Flags every command spells the same way, and the one way a command loads a model."""

from __future__ import annotations

import argparse

MODEL_HELP = ("a shipped model name (tiny, tiny-instruct) or the path of a model directory, a quantized "
              "directory (`llmnotes quantize --out`) or a LoRA adapter directory")


def add_model_argument(parser: argparse.ArgumentParser, default: str | None = "tiny", what: str = "") -> None:
    """``--model``: a shipped name or a directory, everywhere (loaded by ``load_pretrained``)."""
    parser.add_argument("--model", default=default,
                        help=f"{what}{MODEL_HELP} (default: {default or 'the shipped tiny model'})")


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """``--device``: where the model runs."""
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: the best available)")


def load_model(name: str | None, device: str | None = None, for_decode: bool = False):
    """``(model, tokenizer)`` for ``--model`` (``None``: the shipped tiny model) on ``--device``;
    ``for_decode``: prepared for generating (``load_pretrained(..., for_decode=True)``)."""
    from llmnotes.pretrained import load_pretrained
    from llmnotes.utils import pick_device

    return load_pretrained(name or "tiny", device=pick_device(device), for_decode=for_decode)


# --- flags derived from a config dataclass ------------------------------------------------------

def field_docs(cls) -> dict[str, str]:
    """``{field: description}`` from the ``Attributes:`` section of a dataclass's docstring.

    An entry may name several fields (``auth_failure_rate, auth_failure_burst: ...``) and run
    over several indented lines; each named field gets the whole description.
    """
    import inspect
    import re

    doc = inspect.getdoc(cls) or ""
    if "Attributes:" not in doc:
        return {}
    out: dict[str, str] = {}
    names: list[str] = []
    for line in doc.split("Attributes:", 1)[1].splitlines():
        m = re.match(r"^    ([a-z_][a-z0-9_]*(?:, [a-z_][a-z0-9_]*)*): (.*)$", line)
        if m:
            names = m.group(1).split(", ")
            for n in names:
                out[n] = m.group(2).strip()
        elif line.startswith("        ") and names:
            for n in names:
                out[n] += " " + line.strip()
        elif line.strip():
            names = []  # a line at the section's own indent ends the entry
    return out


def _flag_type(hint):
    """(python type, is_optional) of a field's type hint: ``int | None`` -> (int, True)."""
    import types
    import typing

    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else str), True
    return hint, False


def add_config_arguments(parser: argparse.ArgumentParser, cls, *, skip: tuple[str, ...] = (),
                         extra: dict[str, dict] | None = None) -> list[str]:
    """One ``--flag-name`` per field of the dataclass ``cls`` (but ``skip``), help from the field's
    docs, default from the field's default; returns the field names added.

    ``bool`` fields become ``--flag`` (default False) or ``--flag/--no-flag`` (default True),
    ``tuple[float, float]`` fields take two values, ``X | None`` fields default to ``None``.
    ``extra`` adds ``add_argument`` keywords per field (``choices``, ``metavar``, a command's own
    ``default``...); an extra ``help`` may hold ``{doc}``, replaced by the field's docs.
    """
    import dataclasses
    import typing

    docs, hints, added = field_docs(cls), typing.get_type_hints(cls), []
    for f in dataclasses.fields(cls):
        if f.name in skip or f.name == "extra":
            continue
        more = dict((extra or {}).get(f.name, {}))
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        default = more.get("default", default)
        kind, optional = _flag_type(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        kw: dict = {"default": default, "dest": f.name}
        doc = docs.get(f.name, "").replace("``", "").replace("%", "%%")  # argparse formats help with %
        if kind is bool:
            kw["action"] = argparse.BooleanOptionalAction if default else "store_true"
            kw["help"] = doc
        elif typing.get_origin(kind) is tuple:
            item = typing.get_args(kind)[0]
            kw.update(nargs=len(typing.get_args(kind)), type=item,
                      help=f"{doc} (default: {' '.join(map(str, default))})")
        else:
            kw["type"] = kind if kind in (int, float, str) else str
            kw["help"] = f"{doc} (default: {default})"
        if "help" in more:
            more["help"] = more["help"].replace("{doc}", doc)
        kw.update(more)
        parser.add_argument(flag, **kw)
        added.append(f.name)
    return added


def config_from_args(args: argparse.Namespace, cls, names: list[str], **fixed):
    """``cls(**{name: args.name for name in names}, **fixed)``: the config the flags describe."""
    return cls(**{n: getattr(args, n) for n in names}, **fixed)
