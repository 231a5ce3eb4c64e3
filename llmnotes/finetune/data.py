"""The shipped finetuning datasets and a strict JSON-lines reader for your own.

Files live in ``llmnotes/assets/finetune/`` (written by ``generate.py`` there):
``classify.jsonl`` (text → feeling), ``instruct.jsonl`` (Alpaca-style instruction/input/output)
and ``preferences.jsonl`` (prompt with a chosen and a rejected answer). Every row has a
``split``, ``"train"`` or ``"test"``.

A malformed row (bad JSON, a missing field, an empty text, a label out of range) raises a
``ValueError`` that names the file and the line, so a broken dataset fails before training.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

FINETUNE_DIR = Path(__file__).resolve().parents[1] / "assets" / "finetune"
CLASSIFY_LABELS = ["happy", "sad", "scared", "angry"]

# field -> (type, may it be empty?)
SCHEMAS = {
    "classify": {"text": (str, False), "label": (int, False)},
    "instruct": {"instruction": (str, False), "input": (str, True), "output": (str, False)},
    "preferences": {"prompt": (str, False), "input": (str, True), "chosen": (str, False), "rejected": (str, False)},
}
OPTIONAL = {"input"}


def read_jsonl(path: str | os.PathLike, schema: dict[str, tuple[type, bool]], split: str | None = None,
               num_classes: int | None = None) -> list[dict]:
    """Read and validate JSON lines; keep the rows of ``split`` (all rows if ``None``).

    Args:
        schema: ``{field: (type, allow_empty)}``; fields in ``OPTIONAL`` may be absent ("").
        num_classes: if given, ``label`` must be in ``[0, num_classes)``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset file {str(path)!r} does not exist")
    if split is not None and split not in ("train", "test"):
        raise ValueError(f"split must be 'train', 'test' or None, got {split!r}")
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}, line {n}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{where}: not valid JSON ({err.msg})") from err
            if not isinstance(row, dict):
                raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}")
            for field, (kind, allow_empty) in schema.items():
                if field not in row:
                    if field in OPTIONAL:
                        row[field] = ""
                        continue
                    raise ValueError(f"{where}: missing field {field!r} (a row needs {sorted(schema)})")
                value = row[field]
                if kind is int and (not isinstance(value, int) or isinstance(value, bool)):
                    raise ValueError(f"{where}: {field!r} must be an integer, got {value!r}")
                if kind is str and not isinstance(value, str):
                    raise ValueError(f"{where}: {field!r} must be a string, got {type(value).__name__}")
                if kind is str and not allow_empty and not value.strip():
                    raise ValueError(f"{where}: {field!r} is empty")
            if num_classes is not None and not 0 <= row["label"] < num_classes:
                raise ValueError(f"{where}: label {row['label']} is out of range [0, {num_classes})")
            row_split = row.setdefault("split", "train")
            if row_split not in ("train", "test"):
                raise ValueError(f"{where}: split must be 'train' or 'test', got {row_split!r}")
            if split is None or row_split == split:
                rows.append(row)
    if not rows:
        raise ValueError(f"{path} holds no rows" + (f" with split={split!r}" if split else ""))
    return rows


def load_classification(split: str | None = None, path: str | os.PathLike | None = None,
                        num_classes: int | None = None) -> list[dict]:
    """Rows ``{"text", "label", "split"}``; the shipped file has 4 classes (``CLASSIFY_LABELS``)."""
    if path is None:
        path, num_classes = FINETUNE_DIR / "classify.jsonl", num_classes or len(CLASSIFY_LABELS)
    return read_jsonl(path, SCHEMAS["classify"], split, num_classes)


def load_instructions(split: str | None = None, path: str | os.PathLike | None = None) -> list[dict]:
    """Rows ``{"instruction", "input", "output", "kind", "split"}`` (``input`` may be "")."""
    return read_jsonl(path or FINETUNE_DIR / "instruct.jsonl", SCHEMAS["instruct"], split)


def load_preferences(split: str | None = None, path: str | os.PathLike | None = None) -> list[dict]:
    """Rows ``{"prompt", "input", "chosen", "rejected", "split"}``."""
    return read_jsonl(path or FINETUNE_DIR / "preferences.jsonl", SCHEMAS["preferences"], split)


class PairDataset(torch.utils.data.Dataset):
    """Item ``i`` is ``(x[i], y[i])``: the base of the finetuning datasets, whose ``__init__``
    encodes rows into two tensors of one first dimension (already padded so that batches stack)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if len(x) != len(y):
            raise ValueError(f"x and y must have as many items, got {len(x)} and {len(y)}")
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]
