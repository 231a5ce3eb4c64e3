"""Reference-based text metrics: BLEU (Papineni et al., 2002) and ROUGE-N / ROUGE-L (Lin, 2004).

Both compare a generated text with one or more human references by counting shared word
n-grams, so both reward wording, not meaning.

* ``bleu`` is *corpus* BLEU-4: clipped n-gram precisions for n = 1..4, pooled over all
  sentences, combined by a geometric mean and multiplied by a brevity penalty. Tokenisation,
  clipping, the closest-reference length and the default ``"exp"`` smoothing follow
  ``sacrebleu.corpus_bleu`` (its ``13a`` tokenizer), which the tests use as the oracle.
* ``rouge_n`` and ``rouge_l`` are the sentence-level n-gram and longest-common-subsequence
  scores as ``rouge_score.rouge_scorer`` computes them (lower-cased alphanumeric tokens, no
  stemming): precision, recall and their F1.

The scores are fractions in [0, 1]; papers and ``sacrebleu`` usually print BLEU times 100.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

__all__ = ["BLEUScore", "RougeScore", "bleu", "lcs_length", "ngrams", "rouge_l", "rouge_n",
           "tokenize_13a", "tokenize_rouge"]

# sacrebleu's "13a" tokenizer (the mteval-v13a.pl rules WMT reports BLEU with): split off
# punctuation and symbols; split "." and "," except between digits; split "-" after a digit.
_13A_RULES = [
    (re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "),
    (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),
    (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),
]


def tokenize_13a(text: str) -> list[str]:
    """Split ``text`` the way ``sacrebleu``'s default ``13a`` tokenizer does.

    >>> tokenize_13a("Ruby found a coin, then 3.5 more.")
    ['Ruby', 'found', 'a', 'coin', ',', 'then', '3.5', 'more', '.']
    """
    line = text.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    if "&" in line:
        for entity, char in (("&quot;", '"'), ("&amp;", "&"), ("&lt;", "<"), ("&gt;", ">")):
            line = line.replace(entity, char)
    line = f" {line} "
    for pattern, repl in _13A_RULES:
        line = pattern.sub(repl, line)
    return line.split()


def tokenize_rouge(text: str) -> list[str]:
    """Lower-case alphanumeric words, as ``rouge_score``'s default tokenizer makes them.

    >>> tokenize_rouge("Ali felt ANGRY!")
    ['ali', 'felt', 'angry']
    """
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).split()


def ngrams(tokens: Sequence[str], n: int) -> Counter:
    """Counts of the contiguous ``n``-token tuples of ``tokens``.

    >>> ngrams("the cat the cat".split(), 2)
    Counter({('the', 'cat'): 2, ('cat', 'the'): 1})
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


# --------------------------------------------------------------------------------------------
# BLEU
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BLEUScore:
    """Corpus BLEU and its parts: ``score = brevity_penalty * exp(mean(log(precisions)))``."""

    score: float
    precisions: tuple[float, ...]
    brevity_penalty: float
    hyp_len: int
    ref_len: int


def bleu(hypotheses: Sequence[str], references: Sequence[str | Sequence[str]], max_n: int = 4,
         smooth: str = "exp") -> BLEUScore:
    """Corpus BLEU of ``hypotheses`` against ``references`` (one string or a list of strings per
    hypothesis).

    Matches are clipped: a hypothesis n-gram counts at most as often as it occurs in any one
    reference. Matches and totals are summed over the corpus *before* dividing, so BLEU of a
    corpus is not the mean of sentence BLEUs. The brevity penalty ``exp(1 - r / c)`` applies when
    the total hypothesis length ``c`` is below ``r``, the sum of each sentence's closest
    reference length (ties to the shorter).

    ``smooth="exp"`` (sacrebleu's default) replaces a zero precision at order n by
    ``1 / (2^k * total_n)`` for the k-th such order; ``"none"`` leaves it zero, which makes the
    score zero.
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"got {len(hypotheses)} hypotheses but {len(references)} references; "
                         "give one reference (or list of references) per hypothesis")
    if smooth not in ("exp", "none"):
        raise ValueError(f"smooth must be 'exp' or 'none', got {smooth!r}")
    if max_n < 1:
        raise ValueError(f"max_n must be >= 1, got {max_n}")
    correct, total = [0] * max_n, [0] * max_n
    hyp_len = ref_len = 0
    for hyp, refs in zip(hypotheses, references):
        refs = [refs] if isinstance(refs, str) else list(refs)
        if not refs:
            raise ValueError("every hypothesis needs at least one reference")
        h = tokenize_13a(hyp)
        rs = [tokenize_13a(r) for r in refs]
        hyp_len += len(h)
        ref_len += min((abs(len(r) - len(h)), len(r)) for r in rs)[1]   # closest, ties: shorter
        for n in range(1, max_n + 1):
            h_counts = ngrams(h, n)
            max_ref = Counter()
            for r in rs:
                max_ref |= ngrams(r, n)                  # | keeps the larger count: clipping
            total[n - 1] += sum(h_counts.values())
            correct[n - 1] += sum(min(c, max_ref[g]) for g, c in h_counts.items())

    bp = 1.0 if hyp_len >= ref_len else (math.exp(1 - ref_len / hyp_len) if hyp_len else 0.0)
    precisions = [0.0] * max_n
    if not any(correct):
        return BLEUScore(0.0, tuple(precisions), bp, hyp_len, ref_len)
    halvings = 1.0
    for n in range(max_n):
        if total[n] == 0:
            break
        if correct[n]:
            precisions[n] = correct[n] / total[n]
        elif smooth == "exp":
            halvings *= 2
            precisions[n] = 1 / (halvings * total[n])
    log_mean = sum(math.log(p) if p > 0 else -math.inf for p in precisions) / max_n
    return BLEUScore(bp * math.exp(log_mean), tuple(precisions), bp, hyp_len, ref_len)


# --------------------------------------------------------------------------------------------
# ROUGE
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RougeScore:
    """Precision (share of the hypothesis matched), recall (share of the reference matched), F1."""

    precision: float
    recall: float
    fmeasure: float


def _prf(matched: int, hyp_total: int, ref_total: int) -> RougeScore:
    p = matched / hyp_total if hyp_total else 0.0
    r = matched / ref_total if ref_total else 0.0
    return RougeScore(p, r, 2 * p * r / (p + r) if p + r else 0.0)


def rouge_n(hypothesis: str, reference: str, n: int = 2) -> RougeScore:
    """ROUGE-N: overlap of word n-gram counts (each counted at most as often as in the other text).

    >>> rouge_n("Ali and the Drum", "Ali and the Doll", n=1).fmeasure
    0.75
    """
    h, r = ngrams(tokenize_rouge(hypothesis), n), ngrams(tokenize_rouge(reference), n)
    return _prf(sum((h & r).values()), sum(h.values()), sum(r.values()))


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (in order, gaps allowed), by dynamic programming.

    >>> lcs_length("the dog ran home".split(), "the big dog went home".split())
    3
    """
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(hypothesis: str, reference: str) -> RougeScore:
    """ROUGE-L: precision and recall of the longest common subsequence of the two word lists.

    >>> round(rouge_l("The dog ran home.", "The big dog went home.").fmeasure, 4)
    0.6667
    """
    h, r = tokenize_rouge(hypothesis), tokenize_rouge(reference)
    return _prf(lcs_length(h, r), len(h), len(r))
