"""Logits processors vs the transformers warpers/processors: identical masks and values."""

import pytest
import torch

from llmnotes.sampling import processors as P
from llmnotes.sampling import min_p_filter, repetition_penalty, top_k_filter, top_p_filter, typical_filter

hf = pytest.importorskip("transformers.generation.logits_process")


def random_logits(seed: int, B: int = 4, V: int = 50, ties: bool = True) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, V, generator=g) * 3
    if ties:  # round so many logits tie exactly, including at the cut-offs
        logits = (logits * 2).round() / 2
    return logits


def random_ids(seed: int, B: int = 4, T: int = 12, V: int = 50) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + 1000)
    return torch.randint(0, V, (B, T), generator=g)


def same(a: torch.Tensor, b: torch.Tensor) -> None:
    assert torch.equal(torch.isinf(a), torch.isinf(b)), "different masks"
    torch.testing.assert_close(a, b, rtol=0, atol=0)


SEEDS = range(6)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("k,min_keep", [(1, 1), (5, 1), (3, 7), (50, 1), (80, 1)])
def test_top_k_matches_hf(seed, k, min_keep):
    x, ids = random_logits(seed), random_ids(seed)
    same(P.TopKWarper(k, min_keep)(ids, x), hf.TopKLogitsWarper(k, min_tokens_to_keep=min_keep)(ids, x))
    if min_keep == 1:
        same(top_k_filter(x, k), hf.TopKLogitsWarper(k)(ids, x))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("p,min_keep", [(0.01, 1), (0.3, 1), (0.9, 1), (0.95, 3), (1.0, 1)])
def test_top_p_matches_hf(seed, p, min_keep):
    x, ids = random_logits(seed), random_ids(seed)
    same(P.TopPWarper(p, min_keep)(ids, x), hf.TopPLogitsWarper(p, min_tokens_to_keep=min_keep)(ids, x))
    same(top_p_filter(x, p, min_keep), hf.TopPLogitsWarper(p, min_tokens_to_keep=min_keep)(ids, x))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("p,min_keep", [(0.0, 1), (0.05, 1), (0.5, 1), (0.5, 4), (1.0, 1)])
def test_min_p_matches_hf(seed, p, min_keep):
    x, ids = random_logits(seed), random_ids(seed)
    same(min_p_filter(x, p, min_keep), hf.MinPLogitsWarper(p, min_tokens_to_keep=min_keep)(ids, x))
    same(P.MinPWarper(p, min_keep)(ids, x), hf.MinPLogitsWarper(p, min_tokens_to_keep=min_keep)(ids, x))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("mass,min_keep", [(0.2, 1), (0.5, 1), (0.9, 1), (0.9, 5), (0.99, 1)])
def test_typical_matches_hf(seed, mass, min_keep):
    x, ids = random_logits(seed), random_ids(seed)
    same(typical_filter(x, mass, min_keep), hf.TypicalLogitsWarper(mass, min_tokens_to_keep=min_keep)(ids, x))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("t", [0.3, 1.0, 2.5])
def test_temperature_matches_hf(seed, t):
    x, ids = random_logits(seed), random_ids(seed)
    same(P.TemperatureWarper(t)(ids, x), hf.TemperatureLogitsWarper(t)(ids, x))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("penalty", [0.5, 1.0, 1.3, 2.0])
def test_repetition_penalty_matches_hf(seed, penalty):
    x, ids = random_logits(seed), random_ids(seed)
    same(repetition_penalty(x, ids, penalty), hf.RepetitionPenaltyLogitsProcessor(penalty)(ids, x))
    same(P.RepetitionPenaltyProcessor(penalty)(ids, x), hf.RepetitionPenaltyLogitsProcessor(penalty)(ids, x))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", [1, 2, 3])
def test_no_repeat_ngram_matches_hf(seed, n):
    x = random_logits(seed, V=8)
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 8, (4, 20), generator=g)  # small vocabulary: many repeated n-grams
    same(P.NoRepeatNGramProcessor(n)(ids, x), hf.NoRepeatNGramLogitsProcessor(n)(ids, x))


@pytest.mark.parametrize("seed", SEEDS)
def test_bad_words_match_hf(seed):
    x = random_logits(seed, V=8)
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 8, (4, 10), generator=g)
    bad = [[3], [ids[0, -1].item(), 5], [ids[1, -2].item(), ids[1, -1].item(), 6], [7], [1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3]]
    ours = P.BadWordsProcessor(bad, eos_id=7)(ids, x)
    theirs = hf.NoBadWordsLogitsProcessor(bad, eos_token_id=7)(ids, x)
    same(ours, theirs)
    assert torch.isinf(ours[0, 5]) and torch.isinf(ours[1, 6]) and not torch.isinf(ours[:, 7]).any()


def test_forced_and_min_length_match_hf():
    x, ids = random_logits(0), random_ids(0)
    for T in (1, 4):
        same(P.ForcedBOSProcessor(3)(ids[:, :T], x), hf.ForcedBOSTokenLogitsProcessor(3)(ids[:, :T], x))
        same(P.ForcedEOSProcessor(5, 9)(ids[:, :T], x), hf.ForcedEOSTokenLogitsProcessor(5, 9)(ids[:, :T], x))
        same(P.MinLengthProcessor(3, 9)(ids[:, :T], x), hf.MinLengthLogitsProcessor(3, 9)(ids[:, :T], x))


def test_frequency_presence_formula():
    x = random_logits(1, B=2, V=6, ties=False)
    ids = torch.tensor([[0, 1, 1, 1, 5], [2, 2, 4, 4, 4]])
    out = P.frequency_presence_penalty(x, ids, frequency=0.5, presence=0.25)
    counts = torch.tensor([[1, 3, 0, 0, 0, 1], [0, 0, 2, 0, 3, 0]], dtype=torch.float)
    expected = x.clone()
    for b in range(2):
        for j in range(6):
            expected[b, j] = x[b, j] - counts[b, j] * 0.5 - (0.25 if counts[b, j] > 0 else 0.0)
    torch.testing.assert_close(out, expected)
    # the processor ignores the prompt: with prompt_length = 5 nothing is penalised
    same(P.FrequencyPresencePenaltyProcessor(1.0, 1.0, prompt_length=5)(ids, x), x)
    proc = P.FrequencyPresencePenaltyProcessor(1.0, 0.0, prompt_length=3)(ids, x)
    assert proc[0, 1] == x[0, 1] - 1 and proc[1, 4] == x[1, 4] - 2 and proc[1, 2] == x[1, 2]


def test_logit_bias():
    x = random_logits(2)
    out = P.LogitBiasProcessor({3: -100, 7: 5.5})(None, x)
    torch.testing.assert_close(out[:, 3], x[:, 3] - 100)
    torch.testing.assert_close(out[:, 7], x[:, 7] + 5.5)
    mask = torch.ones(50, dtype=torch.bool)
    mask[[3, 7]] = False
    same(out[:, mask], x[:, mask])


def test_processor_list_applies_in_order():
    x, ids = random_logits(3), random_ids(3)
    chain = P.LogitsProcessorList([P.TemperatureWarper(0.7), P.TopKWarper(10), P.TopPWarper(0.8)])
    expected = hf.TopPLogitsWarper(0.8)(ids, hf.TopKLogitsWarper(10)(ids, hf.TemperatureLogitsWarper(0.7)(ids, x)))
    same(chain(ids, x), expected)


@pytest.mark.parametrize("proc", [
    P.TemperatureWarper(0.5), P.TopKWarper(3), P.TopPWarper(0.5), P.MinPWarper(0.2), P.TypicalWarper(0.5),
    P.RepetitionPenaltyProcessor(1.5), P.FrequencyPresencePenaltyProcessor(1.0, 1.0), P.NoRepeatNGramProcessor(2),
    P.LogitBiasProcessor({1: 2.0}), P.BadWordsProcessor([[1], [2, 3]]), P.MinLengthProcessor(100, 0),
    P.ForcedBOSProcessor(0), P.ForcedEOSProcessor(13, 0),
])
def test_inputs_not_modified_in_place(proc):
    x, ids = random_logits(4), random_ids(4)
    x0, ids0 = x.clone(), ids.clone()
    out = proc(ids, x)
    assert torch.equal(x, x0) and torch.equal(ids, ids0)
    assert out.shape == x.shape


def test_filters_keep_at_least_one_and_match_row_by_row():
    x = random_logits(5, B=6, V=30, ties=False)
    for f in (lambda z: top_k_filter(z, 4), lambda z: top_p_filter(z, 0.6), lambda z: min_p_filter(z, 0.3),
              lambda z: typical_filter(z, 0.6)):
        batch = f(x)
        assert (P.kept_count(batch) >= 1).all()
        rows = torch.cat([f(x[i:i + 1]) for i in range(6)])
        same(batch, rows)  # batch-correct: a row's result does not depend on the others


@pytest.mark.parametrize("call,message", [
    (lambda: P.TopPWarper(1.5), "top_p must be in (0, 1], got 1.5"),
    (lambda: P.TopPWarper(0.0), "top_p must be in (0, 1], got 0.0"),
    (lambda: P.TopKWarper(0), "top_k must be >= 1, got 0"),
    (lambda: P.MinPWarper(-0.1), "min_p must be in [0, 1], got -0.1"),
    (lambda: P.TypicalWarper(1.0), "typical_p must be in (0, 1), got 1.0"),
    (lambda: P.TemperatureWarper(0), "temperature must be > 0, got 0"),
    (lambda: P.RepetitionPenaltyProcessor(-1.0), "repetition_penalty must be > 0"),
    (lambda: P.FrequencyPresencePenaltyProcessor(3.0), "frequency_penalty must be a float in [-2, 2]"),
    (lambda: P.NoRepeatNGramProcessor(0), "no_repeat_ngram_size must be >= 1"),
    (lambda: P.LogitBiasProcessor({1: 500}), "logit_bias values must be in [-100, 100]"),
    (lambda: P.BadWordsProcessor([[]]), "bad_words_ids must be a non-empty list"),
    (lambda: top_k_filter(torch.zeros(3, 4, 5), 2), "logits must have shape (B, V)"),
    (lambda: top_p_filter(torch.zeros(2, 5), 2.0), "top_p must be in (0, 1], got 2.0"),
    (lambda: repetition_penalty(torch.zeros(2, 5), torch.zeros(3, 1, dtype=torch.long), 1.2), "batch size 3"),
])
def test_bad_arguments_raise_clear_errors(call, message):
    with pytest.raises(ValueError) as err:
        call()
    assert message in str(err.value)


def test_wrong_types_raise_type_error():
    with pytest.raises(TypeError, match="top_k must be an int"):
        P.TopKWarper(2.5)
    with pytest.raises(TypeError, match="floating-point"):
        top_k_filter(torch.zeros(2, 5, dtype=torch.long), 2)
