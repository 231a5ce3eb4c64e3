"""Small helpers every module shares: device choice, mixed precision, atomic files, seeding."""

from __future__ import annotations

import contextlib
import os
import random
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch


def pick_device(prefer: str | None = None) -> torch.device:
    """Return the best available device: ``cuda``, then ``mps``, then ``cpu``.

    Args:
        prefer: force a device (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``); ``None`` picks.
    """
    if prefer is not None:
        try:
            device = torch.device(prefer)
        except (RuntimeError, TypeError):
            raise ValueError(f"device={prefer!r} is not a device; use 'cpu', 'cuda', 'cuda:N' or 'mps'") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device={prefer!r} was asked for but CUDA is not available; use 'cpu'")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"device={prefer!r} was asked for but MPS is not available; use 'cpu'")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def model_device(model: torch.nn.Module) -> torch.device:
    """Where ``model`` runs: its ``device`` attribute (a GPT's), else its first parameter's."""
    device = getattr(model, "device", None)
    return device if isinstance(device, torch.device) else next(model.parameters()).device


def tensor_stamp(tensors) -> tuple:
    """Where each tensor's data lives and how often it was written in place (``None`` entries
    skipped; reads no data): a cache built from the tensors is stale once this changes."""
    return tuple((t.data_ptr(), t._version) for t in tensors if t is not None)


def supports_bf16(device: torch.device | str) -> bool:
    """True where bf16 autocast is both supported and fast enough to be worth it."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu"  # CPU autocast supports bf16 on every PyTorch >= 2.0


def autocast(device: torch.device | str, dtype: torch.dtype | None = torch.bfloat16):
    """An autocast context for ``device``; ``dtype=None`` (or fp32) gives a no-op context."""
    device = torch.device(device)
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def available_memory() -> int | None:
    """Bytes of RAM that can still be allocated (Linux ``MemAvailable``), or ``None`` if unknown."""
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        return None


def check_memory(nbytes: int, what: str, fix: str, device: torch.device | str | None = None) -> None:
    """Raise ``ValueError`` before allocating ``nbytes`` for ``what`` if the machine cannot hold it.

    A request that needs more than the memory left would otherwise be killed by the kernel or
    thrash; saying so up front, with the fix, is kinder. GPU memory is checked on CUDA devices.
    """
    device = torch.device(device or "cpu")
    if device.type == "cuda" and torch.cuda.is_available():
        free = torch.cuda.mem_get_info(device)[0]
    else:
        free = available_memory()
    if free is not None and nbytes > free:
        raise ValueError(f"{what} needs about {nbytes / 2**30:,.1f} GiB but only {free / 2**30:,.1f} GiB "
                         f"of memory is free; {fix}")


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's generators (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def check_output_path(path: str | os.PathLike, inputs: Sequence[str | os.PathLike] = ()) -> Path:
    """Refuse an output path that replacing by rename would damage; return it as a ``Path``.

    ``os.replace`` swaps whatever sits at ``path`` for a regular file, so a device node
    (``/dev/null``), a FIFO, a socket or a directory there would be destroyed; and an output that
    is one of the command's inputs would be overwritten while (or before) it is read.

    Raises:
        ValueError: ``path`` is empty, exists and is not a regular file, or is one of ``inputs``.
    """
    if str(path) == "":
        raise ValueError("the output path is empty; pass a file name")
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise ValueError(f"output {str(path)!r} is a dangling symbolic link; remove it or choose another path")
    if path.exists():
        if path.is_dir():
            raise ValueError(f"output {str(path)!r} is a directory; pass a file path inside it instead")
        if not path.is_file():
            raise ValueError(f"output {str(path)!r} exists and is not a regular file (a device, FIFO or "
                             "socket); it would be replaced by a file: choose another path")
    target = os.path.realpath(path)
    for item in inputs:
        if item is not None and str(item) != "" and os.path.realpath(item) == target:
            raise ValueError(f"output {str(path)!r} is also an input of this command; writing it would "
                             "destroy the input: choose another output path")
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, inputs: Sequence[str | os.PathLike] = ()) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only if the block succeeds.

    A crash half-way through writing leaves the old file intact, never a truncated one. An
    existing ``path`` that is not a regular file, or that is one of ``inputs``, is refused with
    ``ValueError`` before anything is written (see :func:`check_output_path`).
    """
    path = check_output_path(path, inputs)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates files readable by the owner only; give the result normal permissions.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        check_output_path(path, inputs)  # it may have changed while the block ran
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` as UTF-8, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path``, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def set_module(model: torch.nn.Module, name: str, new: torch.nn.Module) -> None:
    """Replace the submodule at dotted ``name`` (``"h.0.attn.c_attn"``) with ``new``, in place.

    How quantization swaps ``nn.Linear`` for a quantized layer and LoRA wraps one.
    """
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)
