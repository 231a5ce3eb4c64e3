"""Byte-level BPE: train, encode, decode, special tokens, GPT-2's file format.

Byte-pair encoding (Sennrich et al., 2016, arXiv:1508.07909) starts from single symbols and
repeatedly merges the most frequent adjacent pair into a new symbol. GPT-2 (Radford et al.,
2019) runs it on *bytes* rather than characters, so any string -- emoji, CJK, code -- can be
encoded without an "unknown" token, and first splits text with a regex so that merges never
cross a word/number/punctuation boundary.

The pieces, smallest first:

* ``GPT2_SPLIT_PATTERN`` and :func:`bytes_to_unicode`: GPT-2's pre-tokenizer and the printable
  stand-in characters its ``vocab.json``/``merges.txt`` use for raw bytes.
* :func:`get_pair_counts` and :func:`merge`: the two operations BPE is made of.
* :class:`BPETokenizer`: training (incremental pair counts, so a 2 MB corpus trains in seconds),
  a readable reference ``encode`` (the merge loop, with a chunk cache), a fast path that hands
  the same ranks to ``tiktoken`` when it is installed, special tokens with a tiktoken-like
  ``allowed_special`` policy, and ``save``/``from_pretrained`` in the GPT-2 file format that
  Hugging Face ``tokenizers``/``transformers`` read and write.

Over 400 lines because ``BPETokenizer`` is one object whose training, two encoding paths and
file format must agree id for id; the helpers it is built from come first.
"""

from __future__ import annotations

import functools
import heapq
import json
import os
import warnings
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

import regex

# GPT-2's pre-tokenizer (openai/gpt-2 encoder.py): contractions, optional-space + letters,
# optional-space + digits, optional-space + other symbols, whitespace not followed by text,
# any remaining whitespace. Hugging Face's ByteLevel pre-tokenizer uses the same pattern.
GPT2_SPLIT_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
ENDOFTEXT = "<|endoftext|>"


@functools.lru_cache(maxsize=None)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from each byte 0..255 to a printable unicode character.

    Printable Latin-1 bytes map to themselves; the other 68 (controls, space, ...) map to
    characters from U+0100 upwards, so ``" "`` (32) becomes ``"Ġ"`` and ``"\\n"`` (10) ``"Ċ"``.
    This lets ``vocab.json`` and ``merges.txt`` hold any byte sequence as visible text.

    >>> bytes_to_unicode()[ord("a")], bytes_to_unicode()[32], bytes_to_unicode()[10]
    ('a', 'Ġ', 'Ċ')
    """
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1))
    mapping, extra = {}, 0
    for b in range(256):
        if b in keep:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def get_pair_counts(ids: Sequence[int], counts: dict | None = None) -> dict[tuple[int, int], int]:
    """Count adjacent pairs: ``[1, 2, 3, 1, 2] -> {(1, 2): 2, (2, 3): 1, (3, 1): 1}``."""
    counts = {} if counts is None else counts
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def merge(ids: Sequence, pair: tuple, new) -> list:
    """Replace every occurrence of ``pair`` (left to right) with ``new``.

    ``merge([1, 2, 3, 1, 2], (1, 2), 4) -> [4, 3, 4]``; works on ints or on ``bytes`` pieces.
    """
    out, i = [], 0
    while i < len(ids):
        if i < len(ids) - 1 and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def _train_merges(words: dict[tuple[int, ...], int], num_merges: int, verbose: bool,
                  vocab: dict[int, bytes]) -> list[tuple[int, int]]:
    """Learn up to ``num_merges`` merges from ``{word as byte ids: frequency}``.

    Pair counts are built once, weighted by word frequency, then *updated* after each merge
    from only the words that contained the merged pair (``where`` indexes them). The best pair
    comes from a heap with lazy deletion: stale entries (count changed since pushed) are skipped.
    Ties go to the smallest pair of ids, so training is deterministic.
    """
    word_list = [list(w) for w in words]
    freqs = list(words.values())
    counts: dict[tuple[int, int], int] = {}
    where: dict[tuple[int, int], set[int]] = {}
    for wi, w in enumerate(word_list):
        for pair in zip(w, w[1:]):
            counts[pair] = counts.get(pair, 0) + freqs[wi]
            where.setdefault(pair, set()).add(wi)
    heap = [(-c, pair) for pair, c in counts.items()]
    heapq.heapify(heap)

    merges: list[tuple[int, int]] = []
    next_id = len(vocab)
    while len(merges) < num_merges and heap:
        neg, pair = heapq.heappop(heap)
        if counts.get(pair, 0) != -neg or -neg <= 0:
            continue  # stale heap entry
        new_id = next_id
        next_id += 1
        merges.append(pair)
        vocab[new_id] = vocab[pair[0]] + vocab[pair[1]]
        changed: dict[tuple[int, int], int] = {}
        for wi in sorted(where.pop(pair, ())):
            w, f = word_list[wi], freqs[wi]
            if len(w) < 2:
                continue
            new_w = merge(w, pair, new_id)
            if len(new_w) == len(w):
                continue  # the pair no longer occurs in this word
            for p in zip(w, w[1:]):  # remove the old word's pairs ...
                counts[p] -= f
                changed[p] = counts[p]
            for p in zip(new_w, new_w[1:]):  # ... and add the new word's
                counts[p] = counts.get(p, 0) + f
                changed[p] = counts[p]
                where.setdefault(p, set()).add(wi)
            word_list[wi] = new_w
        counts.pop(pair, None)
        changed.pop(pair, None)
        for p, c in changed.items():
            if c > 0:
                heapq.heappush(heap, (-c, p))
            else:
                counts.pop(p, None)
        if verbose and (len(merges) <= 10 or len(merges) % 100 == 0):
            print(f"merge {len(merges)}/{num_merges}: {vocab[pair[0]]!r} + {vocab[pair[1]]!r} "
                  f"-> {vocab[new_id]!r} (id {new_id}, {-neg} occurrences)")
    return merges


class BPETokenizer:
    """A byte-level BPE tokenizer compatible with GPT-2's ``vocab.json`` + ``merges.txt``.

    Args:
        merges: merge rules in priority order, each a pair of byte strings.
        special_tokens: ``{string: id}`` for tokens such as ``"<|endoftext|>"`` that are never
            split or merged.
        vocab: ``{token bytes: id}``; default: byte ``b`` has id ``b``, merge ``k`` has id
            ``256 + k`` (then ranks and ids coincide, as in tokenizers trained here).
        pattern: the pre-tokenization regex (default GPT-2's).
    """

    def __init__(self, merges: Sequence[tuple[bytes, bytes]],
                 special_tokens: dict[str, int] | None = None,
                 vocab: dict[bytes, int] | None = None, pattern: str = GPT2_SPLIT_PATTERN):
        merges = [(bytes(a), bytes(b)) for a, b in merges]
        if vocab is None:
            vocab = {bytes([b]): b for b in range(256)}
            for a, b in merges:
                vocab.setdefault(a + b, len(vocab))
        special_tokens = dict(special_tokens or {})
        missing = [b for b in range(256) if bytes([b]) not in vocab]
        if missing:
            raise ValueError(f"vocab lacks {len(missing)} of the 256 single-byte tokens "
                             f"(e.g. byte {missing[0]}); a byte-level BPE vocab needs all of them")
        for a, b in merges:
            for part in (a, b, a + b):
                if part not in vocab:
                    raise ValueError(f"merge {a!r} + {b!r} uses token {part!r} that is not in the vocab")
        ids = list(vocab.values()) + list(special_tokens.values())
        if len(set(ids)) != len(ids):
            raise ValueError("token ids must be unique across vocab and special_tokens")
        self.pattern = pattern
        try:
            self.compiled_pattern = regex.compile(pattern)
        except (regex.error, TypeError) as err:
            raise ValueError(f"the pre-tokenization pattern {str(pattern)[:80]!r} is not a valid regular "
                             f"expression ({err}); fix 'pattern' in tokenizer_config.json or remove it "
                             "to use GPT-2's") from None
        self.merges = merges
        self.merge_ranks = {pair: rank for rank, pair in enumerate(merges)}
        self.encoder: dict[bytes, int] = dict(vocab)
        self.special_tokens: dict[str, int] = special_tokens
        self.decoder: dict[int, bytes] = {i: t for t, i in vocab.items()}
        self.decoder.update({i: s.encode("utf-8") for s, i in special_tokens.items()})
        self._special_re = (regex.compile("(" + "|".join(regex.escape(s) for s in sorted(
            special_tokens, key=len, reverse=True)) + ")") if special_tokens else None)
        self._encode_chunk_cached = functools.lru_cache(maxsize=1 << 16)(self._encode_chunk)
        self._fast = self._build_fast()

    # ---------------------------------------------------------------- training
    @classmethod
    def train(cls, text: str, vocab_size: int, special_tokens: Iterable[str] = (),
              verbose: bool = False, pattern: str = GPT2_SPLIT_PATTERN) -> "BPETokenizer":
        """Learn a tokenizer of ``vocab_size`` tokens (256 bytes + merges + special tokens).

        Special token strings found in ``text`` are cut out before counting, so no merge ever
        spans one; they get the last ids. Stops early (with a warning) if ``text`` runs out of
        pairs to merge.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        special_tokens = list(dict.fromkeys(special_tokens))
        if not isinstance(vocab_size, int) or vocab_size < 256 + len(special_tokens):
            raise ValueError(f"vocab_size must be an int >= 256 + {len(special_tokens)} special "
                             f"tokens = {256 + len(special_tokens)}, got {vocab_size!r}")
        for s in special_tokens:
            if not isinstance(s, str) or not s:
                raise ValueError(f"special_tokens must be non-empty strings, got {s!r}")
        pieces = [text]
        if special_tokens:
            split_re = regex.compile("|".join(regex.escape(s) for s in special_tokens))
            pieces = split_re.split(text)
        compiled = regex.compile(pattern)
        chunk_counts: Counter[str] = Counter()
        for piece in pieces:
            chunk_counts.update(compiled.findall(piece))
        words = {tuple(chunk.encode("utf-8")): n for chunk, n in chunk_counts.items()}
        vocab = {i: bytes([i]) for i in range(256)}
        num_merges = vocab_size - 256 - len(special_tokens)
        merges = _train_merges(words, num_merges, verbose, vocab)
        if len(merges) < num_merges:
            warnings.warn(f"text has only enough pairs for {len(merges)} merges; the vocab has "
                          f"{256 + len(merges) + len(special_tokens)} tokens, not {vocab_size}",
                          stacklevel=2)
        byte_merges = [(vocab[a], vocab[b]) for a, b in merges]
        n = 256 + len(merges)
        return cls(byte_merges, {s: n + i for i, s in enumerate(special_tokens)}, pattern=pattern)

    # ---------------------------------------------------------------- properties
    @property
    def vocab_size(self) -> int:
        """Number of ids: regular tokens plus special tokens (max id + 1)."""
        return max(self.decoder) + 1

    def __len__(self) -> int:
        return self.vocab_size

    @property
    def eos_id(self) -> int | None:
        """The end-of-sequence id: ``<|endoftext|>``'s, or ``None`` if this tokenizer has no such token.

        ``eos_id`` is the package's one name for it (``generate(..., eos_id=...)``,
        ``GenerationConfig.eos_id``, ``Engine(eos_id=...)``); :func:`eos_id_of` reads it from any
        tokenizer (Hugging Face's call it ``eos_token_id``).
        """
        return self.special_tokens.get(ENDOFTEXT)

    @property
    def eot_id(self) -> int | None:
        """The same id as :attr:`eos_id`, by GPT-2's name for the token (end of text)."""
        return self.eos_id

    @property
    def has_fast_path(self) -> bool:
        """True when ``tiktoken`` is installed and encodes for this tokenizer."""
        return self._fast is not None

    def __repr__(self) -> str:
        return (f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, "
                f"special_tokens={self.special_tokens})")

    # ---------------------------------------------------------------- encoding
    def _encode_chunk(self, chunk: str) -> tuple[int, ...]:
        """Reference BPE on one pre-tokenized chunk: merge the lowest-rank pair until none is left."""
        parts = [bytes([b]) for b in chunk.encode("utf-8")]
        ranks = self.merge_ranks
        while len(parts) >= 2:
            pair = min(zip(parts, parts[1:]), key=lambda p: ranks.get(p, float("inf")))
            if pair not in ranks:
                break  # nothing left to merge
            parts = merge(parts, pair, pair[0] + pair[1])
        return tuple(self.encoder[p] for p in parts)

    def encode_ordinary(self, text: str, fast: bool | None = None) -> list[int]:
        """Encode ``text`` ignoring special tokens (their strings are encoded as plain text).

        Args:
            fast: ``None`` uses tiktoken when available; ``False`` forces the reference path.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if fast is None or fast:
            if self._fast is not None:
                enc, rank_to_id = self._fast
                ranks = enc.encode_ordinary(text)
                return ranks if rank_to_id is None else [rank_to_id[r] for r in ranks]
            if fast:
                raise ValueError("fast=True needs the optional package tiktoken "
                                 "(pip install tiktoken); use fast=None to fall back")
        ids: list[int] = []
        for chunk in self.compiled_pattern.findall(replace_lone_surrogates(text)):
            ids.extend(self._encode_chunk_cached(chunk))
        return ids

    def encode(self, text: str, allowed_special: str | set[str] = "none_raise",
               fast: bool | None = None) -> list[int]:
        """Encode ``text`` to ids.

        Args:
            allowed_special: which special token strings in ``text`` become special ids:
                ``"none_raise"`` (default) raises ``ValueError`` if one occurs; ``"none"``
                encodes them as ordinary text; ``"all"`` allows every special token; a set
                allows those and encodes the others as ordinary text.
            fast: ``None`` uses tiktoken when available; ``False`` forces the reference path.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if allowed_special == "all":
            special = dict(self.special_tokens)
        elif allowed_special == "none":
            special = {}
        elif allowed_special == "none_raise":
            special = {}
            for s in self.special_tokens:
                if s in text:
                    raise ValueError(f"text contains the special token {s!r}; pass "
                                     f"allowed_special='all' (or {{{s!r}}}) to encode it as a special "
                                     f"token, or allowed_special='none' to encode it as plain text")
        elif isinstance(allowed_special, (set, frozenset)):
            unknown = sorted(allowed_special - set(self.special_tokens))
            if unknown:
                raise ValueError(f"allowed_special contains {unknown}, which are not special tokens "
                                 f"of this tokenizer; known: {sorted(self.special_tokens)}")
            special = {s: self.special_tokens[s] for s in allowed_special}
        else:
            raise ValueError(f"allowed_special must be 'all', 'none', 'none_raise' or a set of "
                             f"strings, got {allowed_special!r}")
        if not special or not any(s in text for s in special):
            return self.encode_ordinary(text, fast=fast)
        pattern = regex.compile("(" + "|".join(regex.escape(s) for s in sorted(
            special, key=len, reverse=True)) + ")")
        ids: list[int] = []
        for i, piece in enumerate(pattern.split(text)):
            if i % 2:  # odd pieces are the captured special tokens
                ids.append(special[piece])
            elif piece:
                ids.extend(self.encode_ordinary(piece, fast=fast))
        return ids

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The raw bytes of ``ids`` (a token can end in the middle of a UTF-8 character)."""
        try:
            return b"".join(self.decoder[int(i)] for i in ids)
        except KeyError as err:
            raise ValueError(f"id {err.args[0]} is not in this tokenizer's vocab "
                             f"(ids must be in [0, {self.vocab_size}))") from None

    def decode(self, ids: Iterable[int]) -> str:
        """Ids back to text; invalid UTF-8 (e.g. half an emoji) becomes U+FFFD, as in GPT-2."""
        if hasattr(ids, "tolist"):  # a tensor or an array
            ids = ids.tolist()
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    # ---------------------------------------------------------------- fast path
    def _build_fast(self):
        """A ``tiktoken.Encoding`` over the same ranks, or ``None`` without tiktoken.

        tiktoken merges by the rank of the *merged bytes*; giving merge ``k`` the rank ``256+k``
        makes that the same order as ``merges.txt``. If our ids differ from those ranks (a
        vocab.json written by another trainer), a table maps ranks back to ids.
        """
        if os.environ.get("LLMNOTES_NO_TIKTOKEN") == "1":
            return None
        try:
            import tiktoken
        except ImportError:
            return None
        ranks: dict[bytes, int] = {bytes([b]): b for b in range(256)}
        for a, b in self.merges:
            ranks.setdefault(a + b, len(ranks))
        specials = {s: len(ranks) + i for i, s in enumerate(self.special_tokens)}
        rank_to_id = [0] * (len(ranks) + len(specials))
        for t, r in ranks.items():
            rank_to_id[r] = self.encoder[t]
        for s, r in specials.items():
            rank_to_id[r] = self.special_tokens[s]
        identity = all(i == r for r, i in enumerate(rank_to_id))
        enc = tiktoken.Encoding(f"llmnotes-bpe-{id(self)}", pat_str=self.pattern,
                                mergeable_ranks=ranks, special_tokens=specials)
        return enc, (None if identity else rank_to_id)

    # ---------------------------------------------------------------- files
    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``vocab.json``, ``merges.txt`` and ``tokenizer_config.json`` (GPT-2 layout)."""
        from llmnotes.utils import atomic_write_text  # imported here: it pulls in torch

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        b2u = bytes_to_unicode()
        show = lambda t: "".join(b2u[b] for b in t)  # noqa: E731
        vocab = {show(t): i for t, i in sorted(self.encoder.items(), key=lambda kv: kv[1])}
        vocab.update(self.special_tokens)
        atomic_write_text(directory / "vocab.json", json.dumps(vocab, ensure_ascii=False, indent=0))
        lines = ["#version: 0.2"] + [f"{show(a)} {show(b)}" for a, b in self.merges]
        atomic_write_text(directory / "merges.txt", "\n".join(lines) + "\n")
        eot = ENDOFTEXT if ENDOFTEXT in self.special_tokens else None
        config = {
            "tokenizer_class": "GPT2Tokenizer",
            "add_prefix_space": False,
            "bos_token": eot, "eos_token": eot, "unk_token": eot,
            "added_tokens_decoder": {str(i): {"content": s, "special": True, "lstrip": False,
                                              "rstrip": False, "normalized": False,
                                              "single_word": False}
                                     for s, i in self.special_tokens.items()},
            "llmnotes": {"pattern": self.pattern, "special_tokens": self.special_tokens},
        }
        atomic_write_text(directory / "tokenizer_config.json", json.dumps(config, indent=2) + "\n")
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> "BPETokenizer":
        """Load ``vocab.json`` + ``merges.txt`` (ours, GPT-2's, or Hugging Face's).

        Special tokens are read from ``tokenizer_config.json`` when present; otherwise every
        vocab entry that is neither a single byte nor a merge result (GPT-2's
        ``<|endoftext|>``) is taken as one.
        """
        directory = Path(directory)
        if not directory.is_dir():
            raise FileNotFoundError(f"tokenizer directory {str(directory)!r} does not exist; "
                                    "pass a folder holding vocab.json and merges.txt")
        for name in ("vocab.json", "merges.txt"):
            if not (directory / name).is_file():
                raise FileNotFoundError(f"{name} not found in {str(directory)!r}; a tokenizer "
                                        "folder needs vocab.json and merges.txt (see BPETokenizer.save)")
        try:
            raw_vocab = json.loads((directory / "vocab.json").read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
            raise ValueError(f"{directory / 'vocab.json'} is not valid JSON: {err or 'nested too deeply'}") from None
        if not isinstance(raw_vocab, dict) or not all(isinstance(v, int) for v in raw_vocab.values()):
            raise ValueError(f"{directory / 'vocab.json'} must map token strings to integer ids")
        u2b = {u: b for b, u in bytes_to_unicode().items()}
        config_path = directory / "tokenizer_config.json"
        config: dict = {}
        if config_path.is_file():
            try:
                config = json.loads(config_path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
                raise ValueError(f"{config_path} is not valid JSON: {err or 'nested too deeply'}") from None
            if not isinstance(config, dict) or not isinstance(config.get("llmnotes", {}), dict):
                raise ValueError(f"{config_path} must be a JSON object (with an optional 'llmnotes' "
                                 "object); the tokenizer folder is damaged")
        special_strings = set(config.get("llmnotes", {}).get("special_tokens", {}))
        special_strings |= {t["content"] for t in config.get("added_tokens_decoder", {}).values()
                            if isinstance(t, dict) and t.get("special")}
        special_strings &= set(raw_vocab)
        merges: list[tuple[bytes, bytes]] = []
        text = (directory / "merges.txt").read_text(encoding="utf-8")
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line or (lineno == 1 and line.startswith("#version")):
                continue
            parts = line.split(" ")
            if len(parts) != 2 or not all(parts) or any(c not in u2b for c in parts[0] + parts[1]):
                raise ValueError(f"{directory / 'merges.txt'} line {lineno} is not a byte-level "
                                 f"merge 'A B': {line!r}")
            merges.append((bytes(u2b[c] for c in parts[0]), bytes(u2b[c] for c in parts[1])))
        merged = {a + b for a, b in merges}
        vocab: dict[bytes, int] = {}
        special: dict[str, int] = {}
        for token, i in raw_vocab.items():
            is_bytes = token and all(c in u2b for c in token)
            if token in special_strings or not is_bytes:
                special[token] = i
                continue
            t = bytes(u2b[c] for c in token)
            if len(t) == 1 or t in merged:
                vocab[t] = i
            else:
                special[token] = i  # e.g. GPT-2's <|endoftext|>: in the vocab but never merged
        pattern = config.get("llmnotes", {}).get("pattern", GPT2_SPLIT_PATTERN)
        return cls(merges, special, vocab=vocab, pattern=pattern)


def replace_lone_surrogates(text: str) -> str:
    """``text`` with each unpaired UTF-16 surrogate (``"\\ud800"``) replaced by U+FFFD.

    A lone surrogate cannot be written as UTF-8, so it has no bytes to encode. Both encoding paths
    replace it with U+FFFD (the replacement character, bytes ``EF BF BD``) exactly as tiktoken
    does, and a properly paired surrogate pair becomes the character it stands for.
    """
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


@functools.lru_cache(maxsize=1)
def _shipped_dir() -> Path:
    return Path(__file__).parent / "assets" / "tokenizer"


@functools.lru_cache(maxsize=1)
def _shipped_tokenizer() -> BPETokenizer:
    return BPETokenizer.from_pretrained(_shipped_dir())


def load_tokenizer(path: str | os.PathLike | None = None) -> BPETokenizer:
    """The tokenizer in ``path``; ``None`` gives the shipped one (trained on tinytales, 2048 ids).

    The shipped tokenizer is loaded once and shared (tokenizers are not changed after creation).
    """
    return _shipped_tokenizer() if path is None else BPETokenizer.from_pretrained(path)


def encode_text(tokenizer, text: str, allowed_special: str = "none") -> list[int]:
    """Encode ``text`` with any tokenizer, choosing what special-token strings become.

    ``allowed_special="none"`` (the default) keeps a ``"<|endoftext|>"`` inside ``text`` as plain
    text: right for untrusted text (a user's prompt, a retrieved page). ``"all"`` makes it the
    special id: right for a corpus whose documents it separates. A tokenizer without
    special-token policies (no ``allowed_special`` argument) is called with the text alone.

    Example:
        >>> tok = load_tokenizer()
        >>> len(encode_text(tok, "<|endoftext|>")) > 1, encode_text(tok, "<|endoftext|>", "all")
        (True, [2047])
    """
    try:
        return list(tokenizer.encode(text, allowed_special=allowed_special))
    except TypeError:  # a tokenizer without special-token handling
        return list(tokenizer.encode(text))


def eos_id_of(tokenizer) -> int | None:
    """The end-of-sequence id of any tokenizer: its ``eos_id``, ``eot_id`` or ``eos_token_id``
    attribute (the first that is an int), else its ``<|endoftext|>`` special token, else ``None``."""
    for name in ("eos_id", "eot_id", "eos_token_id"):
        value = getattr(tokenizer, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    special = getattr(tokenizer, "special_tokens", None)
    return special.get(ENDOFTEXT) if isinstance(special, dict) else None
