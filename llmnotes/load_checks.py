"""Checks a model directory must pass before anything is built from it.

A model directory is untrusted input: its ``config.json`` decides how much memory the model
takes, and its weights file may be truncated, empty, a link to a device, or hold integer or NaN
tensors. Everything here reads only file headers and small JSON files, so a hostile directory is
refused in milliseconds instead of after gigabytes of allocation:

- :func:`read_json_object` reads a JSON file that must be an object (not a list, not nested
  thousands deep, not a directory);
- :func:`field` reads one config value with its type checked (``"no"`` is not a boolean);
- :func:`safetensors_header` lists a weights file's tensor names, shapes and dtypes without
  reading the data;
- :func:`check_header_fits` compares that header with a ``GPTConfig`` (layer count, dtypes)
  before the model is built;
- :func:`shard_paths` resolves a sharded checkpoint's files, refusing any outside the directory;
- :func:`check_finite` refuses weights holding NaN or infinity.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any, Iterable

import torch

FLOAT_DTYPES = {"F64", "F32", "F16", "BF16"}
_LAYER_RE = re.compile(r"(?:^|\.)(?:h|layers)\.(\d+)\.")


def regular_file(path: Path, what: str) -> Path:
    """``path`` if it is a regular file (a link to one is fine); else a ``ValueError`` naming it."""
    if path.is_symlink() and not path.exists():
        raise ValueError(f"{what} {str(path)!r} is a symbolic link to a missing file; "
                         "replace it with the real file")
    if not path.exists():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist")
    if path.is_dir():
        raise ValueError(f"{what} {str(path)!r} is a directory, not a file; put the file itself there")
    if not path.is_file():
        raise ValueError(f"{what} {str(path)!r} is not a regular file (a device or FIFO?); "
                         "replace it with the real file")
    return path


def read_json_object(path: Path, what: str = "config") -> dict[str, Any]:
    """Parse a JSON file that must hold an object, with every failure a one-line ``ValueError``."""
    regular_file(path, what)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); the file may be corrupt") from None
    except RecursionError:
        raise ValueError(f"{path} is nested too deeply to be a {what}; the file is corrupt") from None
    except ValueError as err:  # e.g. an integer with more digits than Python converts
        raise ValueError(f"{path} holds a value that cannot be read ({str(err).split(';')[0]})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path} must hold a JSON object, got a {type(value).__name__}; "
                         "the file is not a model config")
    return value


_KINDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string", dict: "an object"}


def field(cfg: dict, key: str, kind: type, default: Any = ..., *, where: str = "config.json",
          optional: bool = False) -> Any:
    """``cfg[key]`` checked to be of ``kind`` (``int`` excludes booleans; ``float`` takes ints).

    Args:
        default: the value when ``key`` is absent; ``...`` makes the key required.
        optional: also accept ``null`` (returned as ``None``).
    """
    if key not in cfg:
        if default is ...:
            raise ValueError(f"{where} lacks the required field {key!r}; the file is not a complete "
                             "model config")
        return default
    value = cfg[key]
    if value is None and optional:
        return None
    ok = isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        ok, value = True, float(value)
    if kind is float and ok and not math.isfinite(value):
        ok = False
    if not ok:
        raise ValueError(f"{where}: {key} must be {_KINDS.get(kind, kind.__name__)}, got {value!r}")
    return value


def shard_paths(directory: Path, index_path: Path) -> list[Path]:
    """The shard files a ``model.safetensors.index.json`` names, each inside ``directory``."""
    index = read_json_object(index_path, "shard index")
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()):
        raise ValueError(f"{index_path}: weight_map must be a non-empty object of tensor name -> "
                         "shard file name; the index is broken")
    root = os.path.realpath(directory)
    paths = []
    for name in sorted(set(weight_map.values())):
        resolved = os.path.realpath(directory / name)
        if os.path.isabs(name) or os.path.commonpath([root, resolved]) != root:
            raise ValueError(f"{index_path} names the shard {name!r}, which lies outside the model "
                             "directory; shard files must be inside it")
        paths.append(regular_file(directory / name, "shard"))
    return paths


def safetensors_header(path: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """``{name: (shape, dtype)}`` of a safetensors file, read from its header only."""
    from safetensors import safe_open

    regular_file(path, "weights file")
    if path.stat().st_size < 8:
        raise ValueError(f"weights file {str(path)!r} is empty or truncated ({path.stat().st_size} bytes); "
                         "copy or download it again")
    try:
        with safe_open(str(path), framework="pt") as f:
            out = {}
            for name in f.keys():
                piece = f.get_slice(name)
                out[name] = (tuple(piece.get_shape()), str(piece.get_dtype()))
            return out
    except Exception as err:  # safetensors raises its own error types for damaged headers
        raise ValueError(f"weights file {str(path)!r} is not a valid safetensors file "
                         f"({' '.join(str(err).split())}); copy or download it again") from None


def check_header_fits(config, header: dict[str, tuple[tuple[int, ...], str]], path: Path,
                      ignored: Iterable[str] = ()) -> None:
    """Refuse weights that cannot belong to ``config`` before a model of its size is built.

    Checks the dtypes (floating point only) and the number of layers the tensor names imply.
    ``ignored`` lists name suffixes of non-parameter buffers to skip. Once the layer count agrees,
    a model of ``config`` built on the meta device costs memory in proportion to the file's
    tensor count, never to ``config``'s sizes, so the caller then compares every shape on the
    meta device (``GPT.from_pretrained`` does), with a message naming the tensor.
    """
    ignored = tuple(ignored)
    bad = [(k, d) for k, (_, d) in header.items() if d not in FLOAT_DTYPES and not k.endswith(ignored)]
    if bad:
        raise ValueError(f"{path}: tensor {bad[0][0]} has dtype {bad[0][1]}; model weights must be "
                         f"floating point ({', '.join(sorted(FLOAT_DTYPES))})")
    layers = {int(m.group(1)) for k in header if (m := _LAYER_RE.search(k))}
    found = max(layers) + 1 if layers else 0
    if found != config.n_layer:
        raise ValueError(f"config.json says n_layer={config.n_layer} but {path} holds weights for "
                         f"{found} layers; the config does not belong to these weights")


def check_finite(state: dict[str, torch.Tensor], path: Path) -> None:
    """Refuse weights with NaN or infinite entries: such a model cannot produce valid text."""
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise ValueError(f"{path}: tensor {name} holds {bad} NaN or infinite values; the weights "
                             "are damaged (a diverged run?): use an earlier checkpoint")
