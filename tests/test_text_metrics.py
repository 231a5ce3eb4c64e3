"""llmnotes.text_metrics against the reference implementations: sacrebleu (BLEU) and
Google's rouge-score (ROUGE-N, ROUGE-L)."""

import doctest
import random

import pytest

from llmnotes import text_metrics
from llmnotes.text_metrics import bleu, rouge_l, rouge_n, tokenize_13a

sacrebleu = pytest.importorskip("sacrebleu")
rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")

WORDS = "the a dog cat sat on mat ran home big little red ball found coin Ali felt happy sad".split()
PUNCT = [".", ",", "!", "?", "'s", "-", "3", "2.5", "(", ")"]


def random_sentence(rng: random.Random, lo: int = 0, hi: int = 14) -> str:
    toks = [rng.choice(WORDS + PUNCT) if rng.random() < 0.9 else rng.choice(WORDS).upper()
            for _ in range(rng.randint(lo, hi))]
    return " ".join(toks) if rng.random() < 0.5 else "".join(t + rng.choice([" ", "", " "]) for t in toks)


def test_docstring_examples():
    result = doctest.testmod(text_metrics)
    assert result.attempted > 0 and result.failed == 0


def test_tokenize_13a_matches_sacrebleu():
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    tok = Tokenizer13a()
    rng = random.Random(0)
    for _ in range(300):
        s = random_sentence(rng)
        assert tokenize_13a(s) == tok(s).split(), s


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("smooth", ["exp", "none"])
def test_corpus_bleu_matches_sacrebleu(seed, smooth):
    rng = random.Random(seed)
    n_refs = 1 + seed % 3
    hyps = [random_sentence(rng) for _ in range(rng.randint(1, 12))]
    refs = [[random_sentence(rng, 1) for _ in range(n_refs)] for _ in hyps]
    ours = bleu(hyps, refs, smooth=smooth)
    streams = [[r[k] for r in refs] for k in range(n_refs)]     # sacrebleu: one list per reference set
    theirs = sacrebleu.corpus_bleu(hyps, streams, smooth_method=smooth)
    assert ours.score * 100 == pytest.approx(theirs.score, abs=1e-9)
    assert ours.brevity_penalty == pytest.approx(theirs.bp)
    assert (ours.hyp_len, ours.ref_len) == (theirs.sys_len, theirs.ref_len)
    if theirs.score > 0:
        assert [p * 100 for p in ours.precisions] == pytest.approx(theirs.precisions)


def test_bleu_of_identical_text_is_one_and_single_string_references_work():
    text = ["The hungry pig found a friend in the garden.", "Ruby found a coin."]
    assert bleu(text, text).score == pytest.approx(1.0)
    assert bleu(text, [[t] for t in text]).score == pytest.approx(1.0)


def test_bleu_brevity_penalty_punishes_short_output():
    full = bleu(["the cat sat on the mat today"], ["the cat sat on the mat today"])
    short = bleu(["the cat sat on the"], ["the cat sat on the mat today"])
    assert all(p == 1.0 for p in short.precisions)          # every n-gram it says is right ...
    assert short.score < full.score and short.brevity_penalty < 1   # ... but it says too little


def test_bleu_rejects_bad_arguments():
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        bleu(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="smooth"):
        bleu(["a"], ["a"], smooth="add-k")
    with pytest.raises(ValueError, match="at least one reference"):
        bleu(["a"], [[]])


@pytest.mark.parametrize("seed", range(10))
def test_rouge_matches_rouge_score(seed):
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
    rng = random.Random(100 + seed)
    for _ in range(30):
        hyp, ref = random_sentence(rng), random_sentence(rng)
        theirs = scorer.score(ref, hyp)                       # rouge-score takes (target, prediction)
        for ours, key in [(rouge_n(hyp, ref, 1), "rouge1"), (rouge_n(hyp, ref, 2), "rouge2"),
                          (rouge_l(hyp, ref), "rougeL")]:
            t = theirs[key]
            assert (ours.precision, ours.recall, ours.fmeasure) == pytest.approx(
                (t.precision, t.recall, t.fmeasure)), (hyp, ref, key)


def test_rouge_recall_and_precision_are_not_symmetric():
    ref = "The sleepy rabbit swam in the pond."
    short = rouge_n("The sleepy rabbit", ref, n=1)
    assert short.precision == 1.0 and short.recall == pytest.approx(3 / 7)
    with pytest.raises(ValueError, match="n must be >= 1"):
        rouge_n("a", "a", n=0)
