"""Training checkpoints that resume bit for bit, written so that a crash never corrupts one.

A checkpoint is a directory ``out_dir/checkpoints/step-NNNNNNN/`` holding

- ``model.safetensors``: the weights (fp32, tied tensors stored once);
- ``state.pt``: the optimizer moments, the LR-schedule position, the gradient-scaler state,
  the data sampler's position, the RNG states (PyTorch, CUDA, NumPy, Python), the step and the
  training config. Only tensors and plain containers, so ``torch.load(..., weights_only=True)``
  reads it without unpickling arbitrary objects.

It is written into a temporary directory first and renamed into place, and only then does the
one-line file ``out_dir/checkpoints/latest`` (itself replaced atomically) point at it. A run
killed at any moment leaves either the old checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from llmnotes.utils import atomic_path, atomic_write_text

WEIGHTS, STATE, LATEST = "model.safetensors", "state.pt", "latest"


# ---- where checkpoints live ---------------------------------------------------------------


def check_writable(out_dir: Path) -> None:
    """Create ``out_dir`` if needed and prove a file can be written there, or raise ValueError."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"out_dir {str(out_dir)!r} is a file, not a directory; choose another out_dir")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out_dir, prefix=".write-test.")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ValueError(f"out_dir {str(out_dir)!r} is not writable ({err.strerror}); "
                         "choose a directory you can write to") from err


def claim(out_dir: Path):
    """Lock ``out_dir`` for this run, then remove checkpoint temp folders a killed run left behind.

    A run killed with ``kill -9`` while saving leaves ``checkpoints/.step-NNNNNNN.xxxx`` (and
    ``.old.xxxx``) folders. They are only safe to delete when no other run is writing to the same
    directory, which the lock proves: a second run on a locked ``out_dir`` is refused instead.

    Returns:
        The open lock file; the lock lasts as long as it stays open (keep a reference).
    """
    root = Path(out_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    key = os.path.realpath(root)
    if key in _HELD and not _HELD[key].closed:  # this process already holds it (a second Trainer)
        return _HELD[key]
    handle = open(root / ".lock", "a+", encoding="utf-8")
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; leave temp folders alone rather than guess
        return handle
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise ValueError(f"another training run is writing to {str(out_dir)!r} right now; wait for it "
                         "to finish or choose another --out") from None
    remove_stale_temps(root)
    _HELD[key] = handle
    return handle


_HELD: dict = {}  # realpath of a checkpoints folder -> the lock file this process holds on it


def remove_stale_temps(root: Path) -> list[Path]:
    """Delete the temp folders of interrupted saves under ``root``; returns what was removed."""
    removed = []
    for tmp in sorted(root.glob(".step-*")) + sorted(root.glob(".old.*")):
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    return removed


STATE_KEYS = ("step", "tokens_seen", "optimizer", "scheduler", "scaler", "sampler", "rng")


def check_state(state: Any, path: Path) -> None:
    """Refuse a ``state.pt`` that lacks what resuming needs (a damaged or foreign file)."""
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint state {str(path)!r} is not a dict; it was not written by llmnotes train")
    missing = [k for k in STATE_KEYS if k not in state]
    if missing:
        raise ValueError(f"checkpoint state {str(path)!r} lacks {missing}; it is damaged or not from "
                         "llmnotes train: delete this checkpoint or resume from an older one")


def check_weights_fit(raw_model: nn.Module, weights: dict[str, torch.Tensor], path: Path) -> None:
    """Refuse checkpoint weights whose shapes differ from the model's (another preset or size)."""
    own = raw_model.state_dict()
    for key, tensor in weights.items():
        if key in own and tuple(own[key].shape) != tuple(tensor.shape):
            raise ValueError(f"checkpoint {str(path)!r} was made with another model configuration: "
                             f"{key} has shape {tuple(tensor.shape)} there but {tuple(own[key].shape)} "
                             "here; resume with the same --preset/--block-size, or choose another --out")


def latest_checkpoint(out_dir: str | os.PathLike | None) -> Path | None:
    """The directory ``out_dir/checkpoints/latest`` names, or ``None`` if there is none."""
    if out_dir is None:
        return None
    root = Path(out_dir) / "checkpoints"
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    name = pointer.read_text(encoding="utf-8").strip()
    path = root / name
    if not name or not path.is_dir():
        raise ValueError(f"checkpoint pointer {str(pointer)!r} names {name!r}, which does not exist; "
                         "the checkpoint directory is corrupt")
    return path


# ---- weights ------------------------------------------------------------------------------


def _dedupe(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Drop tensors that share storage with an earlier key (tied weights); return the aliases."""
    seen: dict[tuple, str] = {}
    out, aliases = {}, {}
    for k, v in state.items():
        key = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape), v.dtype)
        if v.numel() and key in seen:
            aliases[k] = seen[key]
        else:
            seen[key] = k
            out[k] = v.detach().contiguous().cpu()
    return out, aliases


def model_state(model: nn.Module, raw_model: nn.Module, fsdp: bool) -> dict[str, torch.Tensor]:
    """The full (unsharded) weights. Under FSDP every rank must call this (it gathers shards)."""
    if fsdp:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return raw_model.state_dict()


def load_model_state(model: nn.Module, raw_model: nn.Module, weights: dict[str, torch.Tensor], fsdp: bool) -> None:
    if fsdp:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        set_model_state_dict(model, weights, options=StateDictOptions(full_state_dict=True))
        return
    missing, unexpected = raw_model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise ValueError(f"checkpoint does not fit this model: missing {missing[:5]}, unexpected "
                         f"{unexpected[:5]}; resume with the same model configuration")


def optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, fsdp: bool) -> dict[str, Any]:
    if fsdp:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        return get_optimizer_state_dict(model, optimizer,
                                        options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return optimizer.state_dict()


def load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict, fsdp: bool) -> None:
    if fsdp:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))
        return
    optimizer.load_state_dict(state)


# ---- random number generators -------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """Every RNG a training step can touch, as tensors and plain containers."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


# ---- save / load --------------------------------------------------------------------------


def save(out_dir: str | os.PathLike, step: int, weights: dict[str, torch.Tensor], state: dict[str, Any],
         keep: int = 2) -> Path:
    """Write checkpoint ``step`` atomically, point ``latest`` at it, keep the newest ``keep``."""
    root = Path(out_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:07d}"
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}."))
    tmp.chmod(0o755)  # mkdtemp makes it private; a checkpoint is an ordinary directory
    try:
        tensors, aliases = _dedupe(weights)
        save_file(tensors, str(tmp / WEIGHTS), metadata={"aliases": json.dumps(aliases), "step": str(step)})
        torch.save(state, tmp / STATE)
        final = root / name
        if final.exists():  # the same step saved again (e.g. a rerun): move the old one aside
            trash = Path(tempfile.mkdtemp(dir=root, prefix=".old."))
            os.replace(final, trash / name)
            shutil.rmtree(trash)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    atomic_write_text(root / LATEST, name + "\n")
    steps = sorted(p for p in root.glob("step-*") if p.is_dir())
    for old in steps[:-keep]:
        if old.name != name:
            shutil.rmtree(old)
    return final


def load(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint directory; a missing or damaged file raises ``ValueError``."""
    path = Path(path)
    for f in (WEIGHTS, STATE):
        if not (path / f).is_file():
            raise ValueError(f"checkpoint {str(path)!r} is incomplete: {f} is missing")
    try:
        from safetensors import safe_open

        with safe_open(str(path / WEIGHTS), framework="pt") as f:
            meta = f.metadata() or {}
        weights = load_file(str(path / WEIGHTS))
        for alias, source in json.loads(meta.get("aliases", "{}")).items():
            weights[alias] = weights[source]
    except Exception as err:  # safetensors raises its own error types for damaged headers
        raise ValueError(f"checkpoint weights {str(path / WEIGHTS)!r} are corrupt ({' '.join(str(err).split())}); "
                         "delete this checkpoint or resume from an older one") from err
    try:
        state = torch.load(path / STATE, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"checkpoint state {str(path / STATE)!r} is corrupt ({' '.join(str(err).split())[:200]}); "
                         "delete this checkpoint or resume from an older one") from err
    check_state(state, path / STATE)
    return weights, state


def truncate_metrics(path: Path, step: int) -> None:
    """Drop metric records after ``step``: a resumed run will write them again."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                kept.append(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a crash
    with atomic_path(path) as tmp:
        tmp.write_text("".join(k + "\n" for k in kept), encoding="utf-8")
