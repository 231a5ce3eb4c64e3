"""BERT's masked-LM corruption and T5's span corruption (``llmnotes.data``)."""

import pytest
import torch

from llmnotes.data import mlm_mask, span_corrupt

MASK, V = 999, 500


def test_mlm_fractions_match_bert():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, V, (200, 500), generator=g)
    inputs, labels = mlm_mask(ids, MASK, V, generator=g)
    selected = labels != -100
    n = selected.sum().item()
    assert abs(n / ids.numel() - 0.15) < 0.005
    masked = (inputs == MASK) & selected
    same = (inputs == ids) & selected
    changed = selected & ~masked & ~same                      # random replacements that differ
    assert abs(masked.sum().item() / n - 0.8) < 0.01
    # a random draw equals the original with probability 1/V; both shares stay near 10%
    assert abs(changed.sum().item() / n - 0.1 * (1 - 1 / V)) < 0.01
    assert abs(same.sum().item() / n - (0.1 + 0.1 / V)) < 0.01


def test_mlm_labels_and_untouched_positions():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, V, (4, 64), generator=g)
    before = ids.clone()
    inputs, labels = mlm_mask(ids, MASK, V, generator=g)
    assert torch.equal(ids, before)                            # input not modified in place
    selected = labels != -100
    assert torch.equal(labels[selected], ids[selected])
    assert torch.equal(inputs[~selected], ids[~selected])
    assert inputs.shape == labels.shape == ids.shape


def test_mlm_is_reproducible_with_a_generator():
    ids = torch.arange(300).view(3, 100) % V
    a = mlm_mask(ids, MASK, V, generator=torch.Generator().manual_seed(5))
    b = mlm_mask(ids, MASK, V, generator=torch.Generator().manual_seed(5))
    assert all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("kwargs", [dict(select=1.5), dict(p_mask=0.95, p_random=0.1), dict(vocab_size=0)])
def test_mlm_rejects_bad_arguments(kwargs):
    args = dict(mask_id=MASK, vocab_size=V) | kwargs
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        mlm_mask(torch.zeros(1, 8, dtype=torch.long), **args)


def _rebuild(inputs, targets, sentinels):
    """Put the target spans back in place of their sentinels."""
    spans, cur = {}, None
    for t in targets:
        if t in sentinels:
            cur = t
            spans[cur] = []
        else:
            spans[cur].append(t)
    out = []
    for t in inputs:
        out += spans[t] if t in sentinels else [t]
    return out


@pytest.mark.parametrize("n, seed", [(2, 0), (10, 1), (40, 2), (513, 3)])
def test_span_corrupt_round_trips_and_counts(n, seed):
    ids = list(range(n))
    sentinels = list(range(10_000, 10_200))
    inputs, targets = span_corrupt(ids, sentinels, generator=torch.Generator().manual_seed(seed))
    assert _rebuild(inputs, targets, set(sentinels)) == ids
    n_noise = len(targets) - sum(t in sentinels for t in targets)
    n_spans = sum(t in sentinels for t in inputs)
    assert n_noise == min(max(1, round(n * 0.15)), n - 1)
    assert n_spans == max(1, min(round(n_noise / 3.0), n - n_noise))
    assert [t for t in targets if t in sentinels] == sentinels[:n_spans + 1]   # in order, closed


def test_span_corrupt_mean_span_length():
    g = torch.Generator().manual_seed(0)
    lengths = []
    for _ in range(200):
        inputs, targets = span_corrupt(list(range(1000)), list(range(5000, 5100)), generator=g)
        n_spans = sum(t >= 5000 for t in inputs)
        lengths.append((len(targets) - n_spans - 1) / n_spans)
    assert abs(sum(lengths) / len(lengths) - 3.0) < 0.05


def test_span_corrupt_rejects_bad_arguments():
    with pytest.raises(ValueError, match="sentinel_ids"):
        span_corrupt(list(range(100)), [1, 2])
    with pytest.raises(ValueError, match="noise_density"):
        span_corrupt(list(range(100)), list(range(50)), noise_density=1.0)
    with pytest.raises(ValueError, match="at least 2"):
        span_corrupt([7], list(range(5)))
