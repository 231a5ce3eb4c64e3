"""From text to training batches: corpora, token files, sliding-window datasets, loaders.

A language model learns to predict token ``t+1`` from tokens ``..t``. So the data pipeline is:

1. **text** -- :func:`load_corpus` returns the shipped ``tinytales`` stories (or read your own);
2. **tokens** -- encode once with a tokenizer and keep the ids as ``uint16`` on disk
   (:func:`write_token_file` / :func:`read_token_file`, memory-mapped, as nanoGPT does: a 2048-token
   vocab fits in 2 bytes per token, and a memory map never loads the whole file);
3. **windows** -- :class:`TokenDataset` cuts the stream into inputs ``x = tokens[i : i+T]`` and
   targets ``y = tokens[i+1 : i+T+1]``, every ``stride`` tokens;
4. **batches** -- :func:`make_loader` (a seeded ``DataLoader``) or :func:`get_batch` (random
   windows, nanoGPT style) stack them into ``(B, T)`` tensors.

The ``llmnotes tokenize`` command (``llmnotes/cli/tokenize.py``) trains a tokenizer or writes a
token file from the shell.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from llmnotes.utils import atomic_path

CORPUS_DIR = Path(__file__).parent / "assets" / "corpus"
TOKEN_DTYPE = np.uint16  # ids < 65,536: enough for GPT-2's 50,257 and our 2,048


def corpus_path(split: str = "train") -> Path:
    """Path of a split of the shipped ``tinytales`` corpus (``"train"`` or ``"val"``)."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    return CORPUS_DIR / f"{split}.txt"


def load_corpus(split: str = "train") -> str:
    """The shipped ``tinytales`` stories as one string, separated by ``<|endoftext|>`` lines.

    ``train`` is about 1.6 MB (2,090 stories), ``val`` about 85 KB (110 stories); see
    ``llmnotes/assets/corpus/generate.py`` for how they are written.
    """
    return corpus_path(split).read_text(encoding="utf-8")


_TOKEN_CACHE: dict[str, np.ndarray] = {}


def load_tokens(split: str = "train", tokenizer=None) -> np.ndarray:
    """The corpus split encoded with ``tokenizer`` (default: the shipped one) as ``uint16`` ids.

    ``<|endoftext|>`` separators become the special id. With the shipped tokenizer the result is
    cached and returned read-only.
    """
    if tokenizer is None:
        if split not in _TOKEN_CACHE:
            from llmnotes.tokenizer import load_tokenizer

            arr = to_uint16(load_tokenizer().encode(load_corpus(split), allowed_special="all"))
            arr.setflags(write=False)
            _TOKEN_CACHE[split] = arr
        return _TOKEN_CACHE[split]
    return to_uint16(tokenizer.encode(load_corpus(split), allowed_special="all"))


def to_uint16(ids) -> np.ndarray:
    arr = np.asarray(ids.tolist() if isinstance(ids, torch.Tensor) else ids, dtype=np.int64)
    if arr.ndim != 1:
        raise ValueError(f"ids must be one-dimensional, got shape {tuple(arr.shape)}")
    if arr.size and (arr.min() < 0 or arr.max() >= 2 ** 16):
        bad = int(arr.max()) if arr.max() >= 2 ** 16 else int(arr.min())
        raise ValueError(f"token id {bad} does not fit in uint16 (ids must be in [0, 65535]); "
                         "use a vocab smaller than 65,536 or store the ids as int32 yourself")
    return arr.astype(TOKEN_DTYPE)


# ------------------------------------------------------------------ token files
def write_token_file(path: str | os.PathLike, ids: Sequence[int] | np.ndarray | torch.Tensor) -> Path:
    """Write ``ids`` as raw little-endian ``uint16`` (nanoGPT's ``.bin`` layout), atomically.

    Raises:
        ValueError: if an id is negative or >= 65,536.
    """
    arr = to_uint16(ids).astype("<u2", copy=False)
    path = Path(path)
    with atomic_path(path) as tmp:
        arr.tofile(tmp)
    return path


def read_token_file(path: str | os.PathLike) -> np.memmap:
    """Memory-map a ``uint16`` token file written by :func:`write_token_file` (read-only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"token file {str(path)!r} does not exist; write one with "
                                "write_token_file() or `llmnotes tokenize --input FILE --out FILE.bin`")
    size = path.stat().st_size
    if size == 0 or size % 2:
        raise ValueError(f"{str(path)!r} has {size} bytes; a uint16 token file has a positive, "
                         "even number of bytes")
    return np.memmap(path, dtype="<u2", mode="r")


def read_tokens(path: Path, tokenizer=None, cache_dir: Path | None = None, what: str = "token source") -> np.ndarray:
    """A 1-D token array from a .bin (uint16 memmap) or a text file (encoded, then cached).

    Token files go through :func:`read_token_file` and encoded ids through its
    uint16 check, so an id that does not fit (a vocabulary of 65,536 or more) is a ``ValueError``
    naming the fix, and the cache is written by :func:`write_token_file`. ``what`` names the file
    in messages (``"--data file"``).
    The cache file's name carries a hash of the text's bytes and of the tokenizer's files, so a
    changed corpus or a different ``--tokenizer`` never reuses ids encoded for another.
    """
    from llmnotes.load_checks import regular_file
    from llmnotes.tokenizer import encode_text

    path = Path(path)
    regular_file(path, what)
    if path.suffix == ".bin":
        return read_token_file(path)
    if tokenizer is None:
        raise ValueError(f"{path} is text but no tokenizer is available")
    raw = path.read_bytes()
    cached = key_file = key = None
    if cache_dir is not None:
        cached, key = cache_dir / (path.stem + ".bin"), cache_key(raw, tokenizer)
        key_file = cached.with_suffix(".key")  # what the ids were encoded from, beside them
        if cached.is_file() and key_file.is_file() and key_file.read_text(encoding="utf-8").strip() == key:
            return read_token_file(cached)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text ({err}); pass a UTF-8 .txt file or a .bin token file") from None
    ids = to_uint16(encode_text(tokenizer, text, allowed_special="all"))
    if cached is not None:
        from llmnotes.utils import atomic_write_text

        key_file.unlink(missing_ok=True)  # no key names the ids while they are being replaced
        write_token_file(cached, ids)
        atomic_write_text(key_file, key + "\n")
    return ids


def cache_key(data: bytes, tokenizer) -> str:
    """16 hex digits naming (text bytes, their size, the tokenizer's merges/vocab/special tokens)."""
    import hashlib

    h = hashlib.sha256()
    h.update(len(data).to_bytes(8, "little"))
    h.update(hashlib.sha256(data).digest())
    h.update(repr((tokenizer.merges, sorted(tokenizer.encoder.items()), sorted(tokenizer.special_tokens.items()),
                   tokenizer.pattern)).encode("utf-8", "surrogatepass"))
    return h.hexdigest()[:16]


# ------------------------------------------------------------------ datasets
class TokenDataset(Dataset):
    """Sliding windows over a token stream: item ``i`` is ``(x, y)`` with ``y`` = ``x`` shifted by one.

    ``x = tokens[i*stride : i*stride + block_size]`` and ``y = tokens[i*stride + 1 : ... + 1]``,
    both ``LongTensor[block_size]``. ``stride=block_size`` (default) gives non-overlapping
    windows; a smaller stride gives overlapping ones (more, correlated, samples).

    Args:
        tokens: 1-D ids: list, NumPy array, memmap (read lazily) or tensor.
        block_size: context length ``T``.
        stride: step between window starts (default ``block_size``).
    """

    def __init__(self, tokens, block_size: int, stride: int | None = None):
        if not isinstance(block_size, int) or isinstance(block_size, bool) or block_size < 1:
            raise ValueError(f"block_size must be a positive int, got {block_size!r}")
        stride = block_size if stride is None else stride
        if not isinstance(stride, int) or isinstance(stride, bool) or stride < 1:
            raise ValueError(f"stride must be a positive int (or None for block_size), got {stride!r}")
        if isinstance(tokens, torch.Tensor):
            tokens = tokens.detach().cpu().numpy()
        elif not isinstance(tokens, np.ndarray):
            tokens = np.asarray(tokens, dtype=np.int64)
        if tokens.ndim != 1:
            raise ValueError(f"tokens must be one-dimensional, got shape {tuple(tokens.shape)}")
        if len(tokens) < block_size + 1:
            raise ValueError(f"tokens has {len(tokens)} ids but block_size={block_size} needs at "
                             f"least {block_size + 1} (one window plus its shifted target); "
                             "use more text or a smaller block_size")
        self.tokens, self.block_size, self.stride = tokens, block_size, stride

    def __len__(self) -> int:
        return (len(self.tokens) - self.block_size - 1) // self.stride + 1

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"window {i} out of range for a dataset of {n} windows")
        start = i * self.stride
        chunk = torch.from_numpy(np.asarray(self.tokens[start:start + self.block_size + 1],
                                            dtype=np.int64))
        return chunk[:-1], chunk[1:]  # x: (T,), y: (T,)


def train_val_split(tokens, val_fraction: float = 0.1):
    """Split a token stream in two contiguous parts: the first ``1 - val_fraction`` and the rest.

    Contiguous (not shuffled) so that no window of the validation set overlaps training text.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    n = len(tokens)
    if n < 2:
        raise ValueError(f"tokens has {n} ids; need at least 2 to split")
    cut = min(max(1, int(round(n * (1.0 - val_fraction)))), n - 1)
    return tokens[:cut], tokens[cut:]


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool = True, seed: int = 0,
                drop_last: bool = True) -> DataLoader:
    """A ``DataLoader`` yielding ``(x, y)`` of shape ``(B, T)``; shuffling is seeded (reproducible)."""
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if drop_last and len(dataset) < batch_size:
        raise ValueError(f"dataset has {len(dataset)} windows, fewer than batch_size={batch_size}, "
                         "so drop_last=True would yield no batch; lower batch_size or pass drop_last=False")
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                      generator=generator)


def get_batch(tokens, batch_size: int, block_size: int, generator: torch.Generator | None = None,
              device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch_size`` windows at random offsets (nanoGPT's ``get_batch``): ``x, y`` of shape ``(B, T)``."""
    if len(tokens) < block_size + 1:
        raise ValueError(f"tokens has {len(tokens)} ids but block_size={block_size} needs at least "
                         f"{block_size + 1}")
    starts = torch.randint(len(tokens) - block_size, (batch_size,), generator=generator)
    rows = [np.asarray(tokens[s:s + block_size + 1], dtype=np.int64) for s in starts.tolist()]
    batch = torch.from_numpy(np.stack(rows))  # (B, T+1)
    x, y = batch[:, :-1], batch[:, 1:]
    if device is not None:
        x, y = x.to(device), y.to(device)
    return x, y


# ---- Denoising objectives of the encoder families (BERT, T5) -------------------------------------

def mlm_mask(ids: torch.Tensor, mask_id: int, vocab_size: int, select: float = 0.15,
             p_mask: float = 0.8, p_random: float = 0.1,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masked-LM corruption (Devlin et al., 2019, arXiv:1810.04805, §3.1).

    Each position is selected with probability ``select``; a selected position becomes
    ``mask_id`` with probability ``p_mask``, a uniformly random id with probability ``p_random``,
    and stays unchanged otherwise. Only selected positions carry a label.

    Args:
        ids: (..., T) integer token ids; not modified.
        mask_id: id written at masked positions.
        vocab_size: random replacements are drawn from ``[0, vocab_size)``.

    Returns:
        ``(inputs, labels)``, both shaped like ``ids``; ``labels`` is the original id at selected
        positions and -100 (``cross_entropy``'s ``ignore_index``) elsewhere.
    """
    for name, p in (("select", select), ("p_mask", p_mask), ("p_random", p_random)):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {p}")
    if p_mask + p_random > 1.0:
        raise ValueError(f"p_mask + p_random must be at most 1, got {p_mask} + {p_random}; "
                         "the rest is the share left unchanged")
    if vocab_size < 1:
        raise ValueError(f"vocab_size must be positive, got {vocab_size}")
    u = torch.rand(ids.shape, generator=generator, device=ids.device)
    selected = u < select
    # One more uniform draw decides what a selected position shows.
    r = torch.rand(ids.shape, generator=generator, device=ids.device)
    to_mask = selected & (r < p_mask)
    to_random = selected & (r >= p_mask) & (r < p_mask + p_random)
    random_ids = torch.randint(0, vocab_size, ids.shape, generator=generator, device=ids.device)
    inputs = torch.where(to_mask, torch.full_like(ids, mask_id), ids)
    inputs = torch.where(to_random, random_ids.to(ids.dtype), inputs)
    labels = torch.where(selected, ids, torch.full_like(ids, -100))
    return inputs, labels


def _random_segmentation(total: int, parts: int, generator: torch.Generator | None) -> list[int]:
    """``total`` items cut into ``parts`` non-empty runs of random length (uniform cut points)."""
    cuts = (torch.randperm(total - 1, generator=generator)[:parts - 1] + 1).sort().values.tolist()
    return [b - a for a, b in zip([0] + cuts, cuts + [total])]


def span_corrupt(ids: Sequence[int], sentinel_ids: Sequence[int], noise_density: float = 0.15,
                 mean_span: float = 3.0, generator: torch.Generator | None = None,
                 ) -> tuple[list[int], list[int]]:
    """T5's span corruption (Raffel et al., 2020, arXiv:1910.10683, §3.1.4).

    ``round(len * noise_density)`` tokens are dropped in ``round(noise / mean_span)`` spans;
    the kept and dropped tokens are each cut into that many random runs and interleaved (kept
    run first), as in T5's ``random_spans_noise_mask``. Each dropped span becomes one sentinel
    in the input; the target lists every sentinel followed by its span, plus a closing sentinel.

    Example: with sentinels ``<0> <1> <2>``, ``noise_density=0.4`` and ``mean_span=1.5`` (3 tokens
    dropped in 2 spans), ``a b c d e f g h`` might become the input
    ``a b <0> e f g <1>`` and the target ``<0> c d <1> h <2>``.

    Args:
        ids: one sequence of token ids (at least 2).
        sentinel_ids: ids of ``<extra_id_0>``, ``<extra_id_1>``, ...: one more than spans.

    Returns:
        ``(inputs, targets)`` as lists of ids.
    """
    ids = list(ids)
    n = len(ids)
    if n < 2:
        raise ValueError(f"ids must hold at least 2 tokens to corrupt, got {n}")
    if not 0.0 < noise_density < 1.0:
        raise ValueError(f"noise_density must be in (0, 1), got {noise_density}")
    if mean_span < 1.0:
        raise ValueError(f"mean_span must be at least 1, got {mean_span}")
    n_noise = min(max(1, round(n * noise_density)), n - 1)
    n_spans = max(1, min(round(n_noise / mean_span), n - n_noise))
    if len(sentinel_ids) < n_spans + 1:
        raise ValueError(f"sentinel_ids has {len(sentinel_ids)} ids, need {n_spans + 1} for "
                         f"{n_spans} spans; pass more sentinels")
    noise = _random_segmentation(n_noise, n_spans, generator)
    keep = _random_segmentation(n - n_noise, n_spans, generator)
    inputs, targets, pos = [], [], 0
    for i, (k, m) in enumerate(zip(keep, noise)):
        inputs += ids[pos:pos + k]
        pos += k
        inputs.append(sentinel_ids[i])
        targets += [sentinel_ids[i]] + ids[pos:pos + m]
        pos += m
    targets.append(sentinel_ids[n_spans])
    return inputs, targets
