"""Corpus hygiene: exact and near-duplicate detection, and Gopher-style quality filters.

Smallest pieces first:

- ``normalize`` and ``exact_duplicates``: hash each normalised document, group equal hashes;
- ``shingles`` and ``jaccard``: a document as the set of its word n-grams, and the overlap of
  two such sets, ``|A ∩ B| / |A ∪ B|``;
- ``minhash_signature``: Broder's (1997) MinHash. For a random hash function ``h``,
  ``P[min h(A) = min h(B)] = J(A, B)``, so the fraction of agreeing minima over ``k`` hash
  functions estimates the Jaccard similarity with standard error ``sqrt(J(1-J)/k)``;
- ``lsh_candidates`` and ``near_duplicates``: split each signature into ``b`` bands of ``r``
  rows; two documents become a candidate pair when any band matches exactly, which happens with
  probability ``1 - (1 - s^r)^b`` (``lsh_probability``) for similarity ``s``. Candidates are
  then checked with the exact Jaccard, so the only errors left are missed pairs;
- ``gopher_quality``: a subset of the rules of Rae et al. (2021, arXiv:2112.11446, Appendix A).

Nothing here needs more than numpy and the standard library; ``datasketch`` is only the tests'
oracle.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter, defaultdict
from itertools import combinations

import numpy as np

_PRIME = 4_294_967_291  # the largest prime below 2^32: (a·x + b) mod p stays exact in uint64
_WORD = re.compile(r"\w+(?:'\w+)?")


def normalize(text: str) -> str:
    """Unicode NFKC, lower case, punctuation dropped, whitespace collapsed.

    >>> normalize("  Hello,   WORLD!\\n")
    'hello world'
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return " ".join(_WORD.findall(unicodedata.normalize("NFKC", text).lower()))


def exact_duplicates(docs: list[str]) -> list[list[int]]:
    """Groups (each of 2+ indices, in order) of documents whose normalised text is identical.

    Documents are compared by the SHA-1 of their normalised text, so memory stays one hash per
    document however long the documents are.
    """
    groups: dict[bytes, list[int]] = defaultdict(list)
    for i, doc in enumerate(docs):
        groups[hashlib.sha1(normalize(doc).encode("utf-8")).digest()].append(i)
    return [g for g in groups.values() if len(g) > 1]


def shingles(text: str, n: int = 5) -> set[str]:
    """The set of word ``n``-grams of the normalised text (the whole text if shorter).

    >>> sorted(shingles("the cat sat on the mat", n=3))
    ['cat sat on', 'on the mat', 'sat on the', 'the cat sat']
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    words = normalize(text).split()
    if len(words) <= n:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i:i + n]) for i in range(len(words) - n + 1)}


def jaccard(a: set, b: set) -> float:
    """``|a ∩ b| / |a ∪ b|``; two empty sets count as identical (1.0)."""
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(num_perm, bool) or not isinstance(num_perm, int) or num_perm < 1:
        raise ValueError(f"num_perm must be a positive integer, got {num_perm!r}")
    rng = np.random.default_rng(seed)
    # a, b, x < p < 2^32 keep a·x + b below 2^64: exact uint64 arithmetic. (A 61-bit prime with
    # a < 2^31 would wrap a·x only a few times: h would be nearly linear in x, and the minima of
    # two sets would agree far less often than their Jaccard similarity.)
    a = rng.integers(1, _PRIME, size=num_perm, dtype=np.uint64)
    b = rng.integers(0, _PRIME, size=num_perm, dtype=np.uint64)
    return a, b


def minhash_signature(items: set[str], num_perm: int = 128, seed: int = 1) -> np.ndarray:
    """MinHash signature of a set of strings: ``uint64[num_perm]``.

    Each item is hashed to 32 bits (BLAKE2b), then through ``num_perm`` random universal hash
    functions ``(a·x + b) mod p``, ``p = 2^32 - 5``; the signature keeps each function's minimum. Two
    signatures made with the same ``num_perm`` and ``seed`` agree in a fraction of positions
    that estimates the Jaccard similarity of the sets. An empty set gets all ``2^64 - 1``.
    """
    a, b = _permutations(num_perm, seed)
    if not items:
        return np.full(num_perm, np.iinfo(np.uint64).max, dtype=np.uint64)
    x = np.fromiter((int.from_bytes(hashlib.blake2b(s.encode("utf-8"), digest_size=4).digest(), "little")
                     for s in items), dtype=np.uint64, count=len(items)) % np.uint64(_PRIME)
    hashed = (x[:, None] * a[None, :] + b[None, :]) % np.uint64(_PRIME)   # (n_items, num_perm)
    return hashed.min(axis=0)


def minhash_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    """Estimated Jaccard similarity: the fraction of positions where two signatures agree."""
    if sig_a.shape != sig_b.shape:
        raise ValueError(f"signatures must have the same length, got {sig_a.shape} and {sig_b.shape}")
    return float(np.mean(sig_a == sig_b))


def lsh_probability(s, bands: int, rows: int):
    """Probability that two documents of Jaccard similarity ``s`` share at least one LSH band.

    One band of ``rows`` MinHash values matches with probability ``s^rows``; the pair is a
    candidate unless all ``bands`` bands miss: ``1 - (1 - s^rows)^bands``. Works on arrays.
    """
    s = np.asarray(s, dtype=float)
    return 1.0 - (1.0 - s ** rows) ** bands


def lsh_candidates(signatures: np.ndarray, bands: int, rows: int) -> set[tuple[int, int]]:
    """Pairs ``(i, j)``, ``i < j``, whose signatures agree exactly on at least one band.

    Args:
        signatures: ``(n_docs, num_perm)`` array with ``num_perm >= bands * rows``.
    """
    n, k = signatures.shape
    if bands < 1 or rows < 1 or bands * rows > k:
        raise ValueError(f"bands * rows must be between 1 and num_perm={k}, got bands={bands}, rows={rows}")
    pairs: set[tuple[int, int]] = set()
    for band in range(bands):
        buckets: dict[bytes, list[int]] = defaultdict(list)
        block = np.ascontiguousarray(signatures[:, band * rows:(band + 1) * rows])
        for i in range(n):
            buckets[block[i].tobytes()].append(i)
        for members in buckets.values():
            pairs.update(combinations(members, 2))
    return pairs


def near_duplicates(docs: list[str], threshold: float = 0.8, *, n: int = 5, num_perm: int = 128,
                    bands: int = 16, rows: int = 8, seed: int = 1) -> list[tuple[int, int, float]]:
    """Pairs of documents whose shingle sets have Jaccard similarity >= ``threshold``.

    MinHash + LSH finds candidate pairs without comparing all ``n²/2`` of them; each candidate is
    then verified with the exact Jaccard. Returns ``(i, j, jaccard)`` sorted by similarity,
    highest first. With the default 16 bands of 8 rows, a pair at similarity 0.8 is found with
    probability ``lsh_probability(0.8, 16, 8)`` ≈ 0.94, a pair at 0.5 is a candidate with ≈ 0.06.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
    sets = [shingles(d, n) for d in docs]
    sigs = np.stack([minhash_signature(s, num_perm, seed) for s in sets]) if docs else np.zeros((0, num_perm))
    found = []
    for i, j in lsh_candidates(sigs, bands, rows):
        sim = jaccard(sets[i], sets[j])
        if sim >= threshold:
            found.append((i, j, sim))
    return sorted(found, key=lambda t: (-t[2], t[0], t[1]))


# ---- quality filters ------------------------------------------------------------------------

STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")  # Gopher's required words


def gopher_quality(text: str) -> list[str]:
    """The Gopher rules (Rae et al. 2021, Appendix A) a document fails; ``[]`` means keep it.

    Checked: 50 to 100,000 words; mean word length 3 to 10 characters; ``#`` and ``...``
    each at most 0.1 per word; at least 80% of words with an alphabetic character; at least two
    of the stop words; at most 30% duplicate lines; the most common word 2-gram covering at
    most 20% of the characters. (The paper has more: bullets, ellipsis lines, longer n-grams.)
    """
    words = text.split()
    n = len(words)
    failed = []
    if not 50 <= n <= 100_000:
        failed.append("word count")
    if n:
        mean_len = sum(len(w) for w in words) / n
        if not 3 <= mean_len <= 10:
            failed.append("mean word length")
        if text.count("#") / n > 0.1 or (text.count("...") + text.count("…")) / n > 0.1:
            failed.append("symbol-to-word ratio")
        if sum(any(c.isalpha() for c in w) for w in words) / n < 0.8:
            failed.append("alphabetic words")
    lowered = {w.strip(".,!?;:\"'").lower() for w in words}
    if sum(s in lowered for s in STOP_WORDS) < 2:
        failed.append("stop words")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if lines and 1 - len(set(lines)) / len(lines) > 0.30:
        failed.append("duplicate lines")
    if n >= 2:
        bigrams = Counter(zip(words, words[1:]))
        (w1, w2), count = bigrams.most_common(1)[0]
        if count > 1 and count * (len(w1) + len(w2)) / sum(len(w) for w in words) > 0.20:
            failed.append("top 2-gram")
    return failed
