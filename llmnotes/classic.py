"""Text before transformers: word counts, TF-IDF, stemming and n-gram language models.

Each piece is the readable version of a classic tool and is tested against the library that
implements it (scikit-learn's ``CountVectorizer``/``TfidfVectorizer``, NLTK's Porter stemmer).
The site's "Before transformers" part runs them on the shipped corpus.

Smallest pieces first: :func:`words` (tokenize) -> :class:`BagOfWords` (count) -> :func:`tfidf`
(weight) -> :func:`porter_stem` (normalise) -> :class:`NGramLM` (predict the next word), and
:func:`pca` (look at vectors in two dimensions; tested against scikit-learn's ``PCA``).
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

import numpy as np

WORD = r"(?u)\b\w\w+\b"  # scikit-learn's default token_pattern: runs of 2+ word characters
_WORD = re.compile(WORD)


def words(text: str, pattern: str = WORD, lowercase: bool = True) -> list[str]:
    """Split ``text`` into words with a regular expression (scikit-learn's default pattern).

    >>> words("Tom's dog ran. A cat sat!")
    ['tom', 'dog', 'ran', 'cat', 'sat']
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    rx = _WORD if pattern == WORD else re.compile(pattern)
    return rx.findall(text.lower() if lowercase else text)


class BagOfWords:
    """Documents as word-count vectors: one column per vocabulary word, order ignored.

    The vocabulary is sorted alphabetically, as scikit-learn's ``CountVectorizer`` sorts it, so
    the two produce the same matrix (tested).
    """

    def __init__(self, min_df: int = 1):
        if not isinstance(min_df, int) or min_df < 1:
            raise ValueError(f"min_df must be an int >= 1, got {min_df!r}")
        self.min_df = min_df
        self.vocabulary: dict[str, int] = {}

    def fit(self, docs: Iterable[str]) -> "BagOfWords":
        df = Counter()
        for doc in docs:
            df.update(set(words(doc)))
        kept = sorted(w for w, n in df.items() if n >= self.min_df)
        self.vocabulary = {w: i for i, w in enumerate(kept)}
        return self

    def transform(self, docs: Iterable[str]) -> np.ndarray:
        """(n_docs, vocab) int64 counts; words outside the vocabulary are dropped."""
        if not self.vocabulary:
            raise ValueError("BagOfWords is not fitted: call fit(docs) first")
        rows = []
        for doc in docs:
            row = np.zeros(len(self.vocabulary), dtype=np.int64)
            for w in words(doc):
                j = self.vocabulary.get(w)
                if j is not None:
                    row[j] += 1
            rows.append(row)
        return np.stack(rows) if rows else np.zeros((0, len(self.vocabulary)), dtype=np.int64)

    def fit_transform(self, docs: Sequence[str]) -> np.ndarray:
        return self.fit(docs).transform(docs)


def idf(counts: np.ndarray, smooth: bool = True) -> np.ndarray:
    """Inverse document frequency per column, scikit-learn's definition:
    ``ln((1 + n) / (1 + df)) + 1`` (``smooth``) or ``ln(n / df) + 1``."""
    counts = np.asarray(counts)
    n, df = counts.shape[0], (counts > 0).sum(axis=0)
    if smooth:
        return np.log((1 + n) / (1 + df)) + 1.0
    if (df == 0).any():
        raise ValueError("a column occurs in no document: use smooth=True")
    return np.log(n / df) + 1.0


def tfidf(counts: np.ndarray, smooth: bool = True, sublinear_tf: bool = False,
          norm: str | None = "l2") -> np.ndarray:
    """TF-IDF weights of a (n_docs, vocab) count matrix, equal to scikit-learn's
    ``TfidfTransformer`` with the same options: term frequency (``1 + ln tf`` if ``sublinear_tf``)
    times :func:`idf`, each row scaled to unit length (``norm="l2"``) or left as is (``None``)."""
    if norm not in ("l2", None):
        raise ValueError(f"norm must be 'l2' or None, got {norm!r}")
    tf = np.asarray(counts, dtype=np.float64)
    if sublinear_tf:
        tf = np.where(tf > 0, 1.0 + np.log(np.where(tf > 0, tf, 1.0)), 0.0)
    w = tf * idf(counts, smooth)
    if norm == "l2":
        length = np.linalg.norm(w, axis=1, keepdims=True)
        w = w / np.where(length == 0, 1.0, length)
    return w


# ----------------------------------------------------------------------------------- stemming

def _cons(w: str, i: int) -> bool:
    """Whether w[i] is a consonant in Porter's sense ('y' after a consonant is a vowel)."""
    if w[i] in "aeiou":
        return False
    if w[i] == "y":
        return i == 0 or not _cons(w, i - 1)
    return True


def _measure(stem: str) -> int:
    """Porter's m: the number of vowel-consonant sequences in [C](VC)^m[V]."""
    forms = "".join("c" if _cons(stem, i) else "v" for i in range(len(stem)))
    return len(re.findall(r"v+c+", forms))


def _has_vowel(stem: str) -> bool:
    return any(not _cons(stem, i) for i in range(len(stem)))


def _double_cons(w: str) -> bool:
    return len(w) >= 2 and w[-1] == w[-2] and _cons(w, len(w) - 1)


def _cvc(w: str) -> bool:
    """consonant-vowel-consonant ending, the last not w, x or y (e.g. -hop, -fil)."""
    return (len(w) >= 3 and _cons(w, len(w) - 3) and not _cons(w, len(w) - 2)
            and _cons(w, len(w) - 1) and w[-1] not in "wxy")


_STEP2 = [("ational", "ate"), ("tional", "tion"), ("enci", "ence"), ("anci", "ance"),
          ("izer", "ize"), ("abli", "able"), ("alli", "al"), ("entli", "ent"), ("eli", "e"),
          ("ousli", "ous"), ("ization", "ize"), ("ation", "ate"), ("ator", "ate"), ("alism", "al"),
          ("iveness", "ive"), ("fulness", "ful"), ("ousness", "ous"), ("aliti", "al"),
          ("iviti", "ive"), ("biliti", "ble")]
_STEP3 = [("icate", "ic"), ("ative", ""), ("alize", "al"), ("iciti", "ic"), ("ical", "ic"),
          ("ful", ""), ("ness", "")]
_STEP4 = ["al", "ance", "ence", "er", "ic", "able", "ible", "ant", "ement", "ment", "ent",
          "ion", "ou", "ism", "ate", "iti", "ous", "ive", "ize"]


def _replace(w: str, rules, min_m: int) -> str:
    for suffix, rep in rules:
        if w.endswith(suffix):
            stem = w[: len(w) - len(suffix)]
            return stem + rep if _measure(stem) > min_m else w
    return w


def porter_stem(word: str) -> str:
    """Porter's (1980) suffix-stripping stemmer, the original algorithm: five steps of rules,
    each applied only while the remaining stem is long enough (its *measure* m).

    >>> [porter_stem(w) for w in ["caresses", "ponies", "running", "happiness", "relational"]]
    ['caress', 'poni', 'run', 'happi', 'relat']
    """
    w = word.lower()
    if len(w) <= 2:
        return w
    # Step 1a: plurals.
    if w.endswith("sses"):
        w = w[:-2]
    elif w.endswith("ies"):
        w = w[:-2]
    elif w.endswith("s") and not w.endswith("ss"):
        w = w[:-1]
    # Step 1b: -ed and -ing, then tidy the stem they leave.
    if w.endswith("eed"):
        if _measure(w[:-3]) > 0:
            w = w[:-1]
    else:
        for suffix in ("ed", "ing"):
            if w.endswith(suffix) and _has_vowel(w[: -len(suffix)]):
                w = w[: -len(suffix)]
                if w.endswith(("at", "bl", "iz")):
                    w += "e"
                elif _double_cons(w) and w[-1] not in "lsz":
                    w = w[:-1]
                elif _measure(w) == 1 and _cvc(w):
                    w += "e"
                break
    # Step 1c: y -> i after a vowel-containing stem.
    if w.endswith("y") and _has_vowel(w[:-1]):
        w = w[:-1] + "i"
    # Steps 2-4: derivational suffixes, longest first within each step's rule list.
    w = _replace(w, sorted(_STEP2, key=lambda r: -len(r[0])), 0)
    w = _replace(w, sorted(_STEP3, key=lambda r: -len(r[0])), 0)
    for suffix in sorted(_STEP4, key=len, reverse=True):
        if w.endswith(suffix):
            stem = w[: len(w) - len(suffix)]
            if _measure(stem) > 1 and (suffix != "ion" or stem.endswith(("s", "t"))):
                w = stem
            break
    # Step 5: a final -e and a double l.
    if w.endswith("e"):
        stem = w[:-1]
        m = _measure(stem)
        if m > 1 or (m == 1 and not _cvc(stem)):
            w = stem
    if _measure(w) > 1 and _double_cons(w) and w.endswith("l"):
        w = w[:-1]
    return w


# ----------------------------------------------------------------------------- n-gram models

class NGramLM:
    """A word n-gram language model with add-k smoothing:

    ``P(w | h) = (count(h, w) + k) / (count(h) + k |V|)``, where ``h`` is the previous n - 1
    words. ``k = 1`` is Laplace smoothing; every word of the vocabulary (plus ``<unk>`` for
    unseen ones and ``</s>`` for the end of a sentence) gets some probability.
    """

    BOS, EOS, UNK = "<s>", "</s>", "<unk>"

    def __init__(self, n: int = 2, k: float = 1.0):
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be an int >= 1, got {n!r}")
        if k <= 0:
            raise ValueError(f"k must be > 0 (add-k smoothing), got {k!r}")
        self.n, self.k = n, float(k)
        self.counts: dict[tuple[str, ...], Counter] = defaultdict(Counter)
        self.vocab: list[str] = []
        self._known: set[str] = set()

    def _padded(self, sentence: Sequence[str]) -> list[str]:
        known = self._known
        return [self.BOS] * (self.n - 1) + [w if w in known else self.UNK for w in sentence] + [self.EOS]

    def fit(self, sentences: Iterable[Sequence[str]], min_count: int = 1) -> "NGramLM":
        sentences = [list(s) for s in sentences]
        freq = Counter(w for s in sentences for w in s)
        self.vocab = sorted(w for w, c in freq.items() if c >= min_count) + [self.UNK, self.EOS]
        self._known = set(self.vocab)
        self.counts = defaultdict(Counter)
        for s in sentences:
            p = self._padded(s)
            for i in range(self.n - 1, len(p)):
                self.counts[tuple(p[i - self.n + 1:i])][p[i]] += 1
        return self

    def prob(self, history: Sequence[str], word: str) -> float:
        """P(word | the last n - 1 words of history)."""
        if not self.vocab:
            raise ValueError("NGramLM is not fitted: call fit(sentences) first")
        h = tuple(([self.BOS] * (self.n - 1) + list(history))[len(history):]) if self.n > 1 else ()
        c = self.counts.get(h, Counter())
        w = word if word in self._known else self.UNK
        return (c[w] + self.k) / (sum(c.values()) + self.k * len(self.vocab))

    def log_prob(self, sentence: Sequence[str]) -> tuple[float, int]:
        """(total natural-log probability, number of predicted words incl. ``</s>``)."""
        p = self._padded(sentence)
        total = sum(math.log(self.prob(p[:i][-(self.n - 1):] if self.n > 1 else [], p[i]))
                    for i in range(self.n - 1, len(p)))
        return total, len(p) - (self.n - 1)

    def perplexity(self, sentences: Iterable[Sequence[str]]) -> float:
        """exp of the mean negative log-probability per predicted word."""
        lp, n = 0.0, 0
        for s in sentences:
            a, b = self.log_prob(s)
            lp, n = lp + a, n + b
        return math.exp(-lp / n)

    def generate(self, rng: np.random.Generator, max_words: int = 30,
                 history: Sequence[str] = ()) -> list[str]:
        """Sample words until ``</s>`` or ``max_words``."""
        out = list(history)
        for _ in range(max_words):
            h = tuple(([self.BOS] * (self.n - 1) + out)[len(out):]) if self.n > 1 else ()
            c = self.counts.get(h, Counter())
            counts = np.array([c[w] for w in self.vocab], dtype=np.float64) + self.k
            w = self.vocab[rng.choice(len(self.vocab), p=counts / counts.sum())]
            if w == self.EOS:
                break
            out.append(w)
        return out


def sentences(text: str) -> list[list[str]]:
    """The corpus as sentences of lower-cased words (split at . ! ? and story boundaries)."""
    parts = re.split(r"[.!?]+|<\|endoftext\|>", text)
    return [ws for ws in (words(p, pattern=r"[a-z]+(?:'[a-z]+)?") for p in parts) if ws]


# ---------------------------------------------------------------------------------------- PCA


def pca(x, k: int):
    """Principal component analysis by the SVD of the centred data, as scikit-learn's ``PCA``.

    With ``x - mean = U S Vt``, the rows of ``Vt`` are the principal directions (the variance along
    the i-th is ``S[i]**2 / (n - 1)``) and ``(x - mean) @ Vt[:k].T`` are the coordinates in them.
    The sign of a singular vector is arbitrary; as scikit-learn does, each direction is flipped so
    that its largest-magnitude entry is positive, so the two give the same numbers (tested).

    Args:
        x: ``(n, d)`` data, one row per point (a tensor or anything ``torch.as_tensor`` takes).
        k: how many components to keep, ``1 <= k <= min(n, d)``.

    Returns:
        ``(scores, components, explained_variance_ratio)``: tensors of shapes ``(n, k)``,
        ``(k, d)`` and ``(k,)``, in ``x``'s floating dtype (float64 for non-float input).
    """
    import torch  # the rest of this module needs only numpy

    x = torch.as_tensor(x)
    if not x.is_floating_point():
        x = x.double()
    if x.ndim != 2:
        raise ValueError(f"x must be 2-D (n points, d features), got shape {tuple(x.shape)}")
    n, d = x.shape
    if not isinstance(k, int) or not 1 <= k <= min(n, d):
        raise ValueError(f"k must be an int in 1..min(n, d) = 1..{min(n, d)}, got {k!r}")
    centred = x - x.mean(dim=0)
    _, s, vt = torch.linalg.svd(centred, full_matrices=False)  # s: (min(n, d),), vt: (min(n, d), d)
    biggest = vt.abs().argmax(dim=1)
    signs = torch.sign(vt[torch.arange(vt.shape[0]), biggest])
    vt = vt * signs[:, None]
    variance = s**2
    return centred @ vt[:k].T, vt[:k], variance[:k] / variance.sum()
