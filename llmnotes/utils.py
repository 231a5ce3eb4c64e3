"""Small helpers every module shares: device choice, mixed precision, atomic files, seeding."""

from __future__ import annotations

import contextlib
import os
import random
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import torch


def pick_device(prefer: str | None = None) -> torch.device:
    """Return the best available device: ``cuda``, then ``mps``, then ``cpu``.

    Args:
        prefer: force a device (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``); ``None`` picks.
    """
    if prefer is not None:
        device = torch.device(prefer)
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


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's generators (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only if the block succeeds.

    A crash half-way through writing leaves the old file intact, never a truncated one.
    """
    path = Path(path)
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


def compile_supported(device: torch.device | str | None = None) -> tuple[bool, str]:
    """Whether ``torch.compile`` is expected to work here, and why not if it isn't.

    ``torch.compile`` needs a C++ compiler for its CPU backend and Triton for CUDA; Windows gained
    support only in PyTorch 2.6 (with MSVC), and Python 3.13 only in 2.6 as well.
    """
    import platform
    import shutil
    import sys

    version = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2])
    if platform.system() == "Windows" and version < (2, 6):
        return False, f"torch.compile needs PyTorch >= 2.6 on Windows (found {torch.__version__})"
    if sys.version_info >= (3, 13) and version < (2, 6):
        return False, f"torch.compile needs PyTorch >= 2.6 on Python 3.13 (found {torch.__version__})"
    device = torch.device(device) if device is not None else pick_device()
    if device.type == "cpu" and not any(shutil.which(cc) for cc in ("cc", "gcc", "clang", "cl")):
        return False, "torch.compile's CPU backend needs a C/C++ compiler (none on PATH)"
    return True, ""


def maybe_compile(module: torch.nn.Module, device: torch.device | str | None = None, **kwargs):
    """``torch.compile(module)`` where supported; otherwise warn once and return it unchanged."""
    import warnings

    ok, why = compile_supported(device)
    if not ok:
        warnings.warn(f"running eagerly: {why}", RuntimeWarning, stacklevel=2)
        return module
    return torch.compile(module, **kwargs)
