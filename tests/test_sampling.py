"""generate / stream / beam_search / speculative_generate vs transformers and vs statistics."""

import math
import os

import pytest
import torch

from llmnotes import GPT, GPTConfig
from llmnotes.sampling import (beam_search, build_processors, generate, generate_reference, speculative_generate,
                               stream, top_k_filter, top_p_filter, truncate_at_stop)
from llmnotes.sampling import verify


def make_model(seed: int = 0, vocab: int = 64, scale: float = 8.0, **kw) -> GPT:
    """A nano GPT whose embeddings are scaled up so its next-token distributions are peaked
    (random GPT-2 init gives near-uniform logits, which would make every test a coin toss)."""
    torch.manual_seed(seed)
    model = GPT(GPTConfig.from_preset("nano", vocab_size=vocab, **kw)).eval()
    with torch.no_grad():
        model.transformer.wte.weight.mul_(scale)
    return model


@pytest.fixture(scope="module")
def model():
    return make_model()


@pytest.fixture(scope="module")
def hf_pair(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    model = make_model(1)
    path = tmp_path_factory.mktemp("gpt")
    model.save_pretrained(path)
    return model, transformers.GPT2LMHeadModel.from_pretrained(path).eval()


def prompts(seed: int, B: int = 2, T: int = 4, V: int = 64) -> torch.Tensor:
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- greedy
@pytest.mark.parametrize("seed", range(2))
def test_greedy_matches_transformers(hf_pair, seed):
    ours, theirs = hf_pair
    idx = prompts(seed)
    eos = int(generate(ours, idx, 3, temperature=0)[0, -1])  # a token row 0 really produces
    for eos_id in (None, eos):
        a = generate(ours, idx, 16, temperature=0, eos_id=eos_id)
        b = theirs.generate(idx, attention_mask=torch.ones_like(idx), max_new_tokens=16, do_sample=False,
                            eos_token_id=eos_id, pad_token_id=eos_id if eos_id is not None else 0)
        assert torch.equal(a, b)
    assert (a[0, 4:] == eos).any()  # the EOS case was exercised


def test_greedy_with_penalties_matches_transformers(hf_pair):
    ours, theirs = hf_pair
    idx = prompts(7)
    a = generate(ours, idx, 16, temperature=0, repetition_penalty=1.5, no_repeat_ngram_size=2,
                 bad_words_ids=[[3], [5, 6]])
    b = theirs.generate(idx, attention_mask=torch.ones_like(idx), max_new_tokens=16, do_sample=False,
                        repetition_penalty=1.5, no_repeat_ngram_size=2, bad_words_ids=[[3], [5, 6]], pad_token_id=0)
    assert torch.equal(a, b)


def test_cached_equals_uncached_reference(model):
    idx = prompts(3, B=3)
    assert torch.equal(generate(model, idx, 20, temperature=0), generate_reference(model, idx, 20, temperature=0))
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a = generate(model, idx, 20, temperature=0.9, top_k=10, generator=g1)
    b = generate_reference(model, idx, 20, temperature=0.9, top_k=10, generator=g2)
    assert torch.equal(a, b)


def test_left_padded_batch_equals_rows_alone(model):
    rows = [[5, 9, 2, 7, 1, 3], [8, 4], [6, 6, 1, 0]]
    T = max(map(len, rows))
    pad = 0
    idx = torch.tensor([[pad] * (T - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (T - len(r)) + [1] * len(r) for r in rows])
    batch = generate(model, idx, 12, temperature=0, attention_mask=mask)
    for i, r in enumerate(rows):
        alone = generate(model, torch.tensor([r]), 12, temperature=0)
        assert batch[i, T:].tolist() == alone[0, len(r):].tolist()


def test_left_padded_batch_matches_transformers(hf_pair):
    ours, theirs = hf_pair
    idx = torch.tensor([[0, 0, 5, 9, 2], [8, 4, 1, 1, 3]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    a = generate(ours, idx, 10, temperature=0, attention_mask=mask)
    b = theirs.generate(idx, attention_mask=mask, max_new_tokens=10, do_sample=False, pad_token_id=0)
    assert torch.equal(a, b)


# --------------------------------------------------------------------------- sampling
def test_sampling_reproducible_with_generator(model):
    idx = prompts(1)
    run = lambda seed: generate(model, idx, 15, temperature=1.0, top_p=0.9,
                                generator=torch.Generator().manual_seed(seed))
    assert torch.equal(run(3), run(3))
    assert not torch.equal(run(3), run(4))


def test_sampling_matches_transformers_draw_for_draw(hf_pair):
    # Same probabilities and torch.multinomial on the same seeded generator: the same draws.
    ours, theirs = hf_pair
    idx = prompts(2)
    torch.manual_seed(11)
    b = theirs.generate(idx, attention_mask=torch.ones_like(idx), max_new_tokens=12, do_sample=True,
                        temperature=0.8, top_k=20, top_p=0.9, pad_token_id=0)
    a = generate(ours, idx, 12, temperature=0.8, top_k=20, top_p=0.9, generator=torch.Generator().manual_seed(11))
    assert torch.equal(a, b)


def test_sampled_frequencies_match_filtered_distribution(model):
    """Chi-square goodness of fit of 20,000 first tokens to softmax(top_p(top_k(logits / t)))."""
    idx = prompts(9, B=1)
    with torch.no_grad():
        logits = model(idx)[:, -1].float()
    probs = top_p_filter(top_k_filter(logits / 0.7, 12), 0.9).softmax(-1)[0]
    n = 20_000
    draws = generate(model, idx.expand(n, -1), 1, temperature=0.7, top_k=12, top_p=0.9,
                     generator=torch.Generator().manual_seed(0))[:, -1]
    counts = torch.bincount(draws, minlength=probs.numel()).double()
    support = probs > 0
    assert counts[~support].sum() == 0  # filtered tokens are never drawn
    expected = probs[support].double() * n
    chi2 = float(((counts[support] - expected) ** 2 / expected).sum())
    dof = int(support.sum()) - 1
    assert dof >= 3
    # 99.9% quantile of chi-square via the Wilson-Hilferty approximation
    z = 3.09
    limit = dof * (1 - 2 / (9 * dof) + z * math.sqrt(2 / (9 * dof))) ** 3
    assert chi2 < limit, (chi2, limit)


def test_temperature_zero_is_greedy_and_never_divides(model):
    idx = prompts(4)
    out = generate(model, idx, 8, temperature=0, top_k=3, top_p=0.5)  # filters ignored when greedy
    assert torch.equal(out, generate(model, idx, 8, temperature=0))
    assert build_processors(temperature=0, top_k=3) == []


def test_stream_yields_tokens_as_generate_returns_them(model):
    idx = prompts(5)
    steps = list(stream(model, idx, 7, temperature=0))
    assert len(steps) == 7 and all(s.shape == (2,) for s in steps)
    assert torch.equal(torch.stack(steps, 1), generate(model, idx, 7, temperature=0)[:, 4:])


def test_finished_rows_are_padded_and_loop_stops_early(model):
    idx = prompts(6)
    free = generate(model, idx, 10, temperature=0)
    eos = int(free[0, 6])  # row 0's third new token
    out = generate(model, idx, 10, temperature=0, eos_id=eos, pad_id=63)
    first = (free[0, 4:] == eos).nonzero()[0].item()
    assert out[0, 4 + first] == eos and (out[0, 5 + first:] == 63).all()
    single = generate(model, idx[:1], 10, temperature=0, eos_id=eos)
    assert single.shape[1] == 4 + first + 1  # every row finished: no wasted steps


def test_stop_strings_with_a_tokenizer(model):
    class CharTok:  # id i <-> chr(97 + i % 26): enough to exercise the stop check
        def decode(self, ids):
            return "".join(chr(97 + i % 26) for i in ids)

    idx = prompts(8, B=1)
    free = generate(model, idx, 12, temperature=0)
    text = CharTok().decode(free[0, 4:].tolist())
    stop = text[5:7]
    out = generate(model, idx, 12, temperature=0, stop=stop, tokenizer=CharTok(), eos_id=0)
    generated = CharTok().decode(out[0, 4:].tolist())
    assert stop in generated and len(out[0]) < len(free[0])
    assert truncate_at_stop("hello world", ["o w", "ld"]) == "hell"


def test_min_new_tokens_blocks_eos(model):
    idx = prompts(6)
    eos = int(generate(model, idx, 1, temperature=0)[0, -1])
    out = generate(model, idx, 6, temperature=0, eos_id=eos, min_new_tokens=3)
    assert (out[0, 4:7] != eos).all()


@pytest.mark.parametrize("kwargs,message", [
    (dict(temperature=-1.0), "temperature must be >= 0"),
    (dict(top_k=0), "top_k must be >= 1"),
    (dict(top_p=1.5), "top_p must be in (0, 1], got 1.5"),
    (dict(top_p=0.0), "top_p must be in (0, 1], got 0.0"),
    (dict(max_new_tokens=-1), "max_new_tokens must be >= 0"),
    (dict(max_new_tokens=100), "exceeds the model's block_size 64"),
    (dict(stop="x"), "stop strings need tokenizer"),
    (dict(min_new_tokens=2), "min_new_tokens needs eos_id"),
])
def test_bad_arguments(model, kwargs, message):
    args = dict(max_new_tokens=5)
    args.update(kwargs)
    with pytest.raises(ValueError) as err:
        generate(model, prompts(0), **args)
    assert message in str(err.value)


def test_bad_prompts(model):
    with pytest.raises(ValueError, match=r"shape \(B, T\)"):
        generate(model, torch.tensor([1, 2, 3]), 2)
    with pytest.raises(TypeError, match="integer token ids"):
        generate(model, torch.zeros(1, 3), 2)


# --------------------------------------------------------------------------- beam search
@pytest.mark.parametrize("num_beams,length_penalty", [(1, 1.0), (3, 1.0), (4, 0.5), (2, 2.0), (3, -1.0)])
def test_beam_search_matches_transformers(hf_pair, num_beams, length_penalty):
    ours, theirs = hf_pair
    hit_eos = 0
    for seed in range(2):
        idx = prompts(seed)
        eos = int(generate(ours, idx, 4, temperature=0)[seed % 2, -1])  # likely somewhere in a beam
        for eos_id in (None, eos):
            a = beam_search(ours, idx, num_beams, 12, length_penalty=length_penalty, eos_id=eos_id)
            b = theirs.generate(idx, attention_mask=torch.ones_like(idx), max_new_tokens=12, do_sample=False,
                                num_beams=num_beams, length_penalty=length_penalty, eos_token_id=eos_id,
                                pad_token_id=eos_id if eos_id is not None else 0)
            assert torch.equal(a, b), (seed, eos_id)
            hit_eos += eos_id is not None and bool((a[:, 4:] == eos_id).any())
    if length_penalty <= 1.0:  # (a strong length bonus may prefer hypotheses that never end)
        assert hit_eos > 0  # finished hypotheses were exercised


def test_beam_search_early_stopping_matches_transformers(hf_pair):
    ours, theirs = hf_pair
    idx = prompts(2)
    eos = int(generate(ours, idx, 2, temperature=0)[0, -1])
    a = beam_search(ours, idx, 3, 12, eos_id=eos, early_stopping=True)
    b = theirs.generate(idx, attention_mask=torch.ones_like(idx), max_new_tokens=12, do_sample=False, num_beams=3,
                        eos_token_id=eos, pad_token_id=eos, early_stopping=True)
    assert torch.equal(a, b)


@pytest.mark.parametrize("num_beams", [2, 4])
def test_beam_search_left_padded_batch_matches_transformers(hf_pair, num_beams):
    ours, theirs = hf_pair
    rows = [[5, 9, 2, 7, 1, 3], [8, 4], [6, 6, 1, 0]]
    T = max(map(len, rows))
    idx = torch.tensor([[0] * (T - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (T - len(r)) + [1] * len(r) for r in rows])
    eos = int(generate(ours, idx, 3, temperature=0, attention_mask=mask)[1, -1])
    a = beam_search(ours, idx, num_beams, 10, eos_id=eos, attention_mask=mask)
    b = theirs.generate(idx, attention_mask=mask, max_new_tokens=10, do_sample=False, num_beams=num_beams,
                        eos_token_id=eos, pad_token_id=eos)
    assert torch.equal(a, b)
    # A padded row searches exactly as it would alone.
    alone = beam_search(ours, torch.tensor([rows[1]]), num_beams, 10, eos_id=eos)
    n = alone.shape[1] - len(rows[1])
    assert torch.equal(a[1, T:T + n], alone[0, len(rows[1]):])


def test_beam_search_one_beam_is_greedy_and_scores_are_log_probs(model):
    idx = prompts(5)
    assert torch.equal(beam_search(model, idx, 1, 10), generate(model, idx, 10, temperature=0))
    seq, score = beam_search(model, idx, 3, 6, length_penalty=0.0, return_scores=True)
    with torch.no_grad():
        logp = model(seq[:, :-1]).log_softmax(-1)
    total = logp[:, 3:].gather(-1, seq[:, 4:, None]).squeeze(-1).sum(-1)  # log p of the new tokens
    torch.testing.assert_close(score, total, atol=1e-4, rtol=1e-4)
    greedy = generate(model, idx, 6, temperature=0)
    greedy_logp = model(greedy[:, :-1]).log_softmax(-1)[:, 3:].gather(-1, greedy[:, 4:, None]).sum((1, 2))
    assert (score >= greedy_logp - 1e-4).all()  # the beam's best is at least as likely as greedy


def test_beam_search_bad_arguments(model):
    with pytest.raises(ValueError, match="num_beams must be an int >= 1"):
        beam_search(model, prompts(0), 0, 5)
    with pytest.raises(ValueError, match="block_size"):
        beam_search(model, prompts(0), 2, 500)
    with pytest.raises(ValueError, match="attention_mask must have the prompt's shape"):
        beam_search(model, prompts(0), 2, 5, attention_mask=torch.ones(2, 3))


# --------------------------------------------------------------------------- speculative
@pytest.fixture(scope="module")
def draft():
    return make_model(seed=42, scale=8.0)


@pytest.mark.parametrize("num_draft", [1, 4])
def test_speculative_greedy_equals_target_greedy(model, draft, num_draft):
    for seed in range(2):
        idx = prompts(seed, B=1)
        spec, stats = speculative_generate(model, draft, idx, 20, num_draft=num_draft, temperature=0,
                                           return_stats=True)
        assert torch.equal(spec, generate(model, idx, 20, temperature=0))
        assert stats.emitted == 20 and stats.rounds < 20 + 1
    # the target as its own draft accepts every proposal: k + 1 tokens per target pass
    same, stats = speculative_generate(model, model, idx, 20, num_draft=4, temperature=0, return_stats=True)
    assert stats.acceptance_rate == 1.0 and stats.rounds == 4


def test_early_exit_draft_shares_weights_and_keeps_greedy_output():
    from llmnotes.sampling import early_exit_draft

    target = make_model(5, n_layer=3)
    n_params = target.num_params()
    draft = early_exit_draft(target, 1)
    assert len(draft.transformer.h) == 1 and len(target.transformer.h) == 3 and target.num_params() == n_params
    assert draft.transformer.h[0] is target.transformer.h[0] and draft.lm_head.weight is target.lm_head.weight
    idx = prompts(1, B=1)
    with torch.no_grad():  # the draft is the target's first block followed by its ln_f and head
        x = target.transformer.wte(idx) + target.transformer.wpe(torch.arange(4))
        x, _ = target.transformer.h[0](x)
        torch.testing.assert_close(draft(idx), target.lm_head(target.transformer.ln_f(x)))
    out, stats = speculative_generate(target, draft, idx, 16, num_draft=3, temperature=0, return_stats=True)
    assert torch.equal(out, generate(target, idx, 16, temperature=0)) and stats.rounds < 16
    with pytest.raises(ValueError, match=r"n_layers must be an int in \[1, 3\]"):
        early_exit_draft(target, 4)


def test_speculative_stops_at_eos(model, draft):
    idx = prompts(0, B=1)
    ref = generate(model, idx, 20, temperature=0)
    eos = int(ref[0, 9])
    out = speculative_generate(model, draft, idx, 20, num_draft=4, temperature=0, eos_id=eos)
    first = (ref[0, 4:] == eos).nonzero()[0].item()
    assert torch.equal(out[0], ref[0, : 4 + first + 1])


def test_verify_keeps_the_target_distribution():
    """Rejection sampling: the first emitted token ~ p_1 whatever q is (and the second ~ p_2)."""
    g = torch.Generator().manual_seed(0)
    V, k, n = 6, 2, 20_000
    p = torch.softmax(torch.randn(k + 1, V, generator=g) * 1.5, -1)
    q = torch.softmax(torch.randn(k, V, generator=g) * 1.5, -1)
    first, second = torch.zeros(V), torch.zeros(V)
    accepted_first = 0
    for _ in range(n):
        draft = torch.multinomial(q, 1, generator=g).squeeze(-1)
        n_ok, nxt = verify(p, q, draft, g)
        tokens = draft[:n_ok].tolist() + [nxt]
        first[tokens[0]] += 1
        if n_ok >= 1:
            accepted_first += 1
            second[tokens[1]] += 1
    assert torch.allclose(first / n, p[0], atol=0.015)  # ~4 standard errors at n = 20,000
    assert torch.allclose(second / second.sum(), p[1], atol=0.02)
    # the first proposal is accepted with probability sum_x min(p(x), q(x))
    assert abs(accepted_first / n - float(torch.minimum(p[0], q[0]).sum())) < 0.015


def test_speculative_sampling_matches_target_distribution():
    """End to end: the joint distribution of the first two tokens is the target's (chi-square).

    With top-k = 3 the target's exact joint distribution has 9 cells, computed from 1 + 3 forward
    passes; 1,000 speculative runs (a different random model drafting) are tested against it.
    """
    target, draft = make_model(0, vocab=16, scale=4.0), make_model(7, vocab=16, scale=4.0)
    idx = prompts(3, B=1, V=16)
    k = 3

    def probs(ids):
        with torch.no_grad():
            return top_k_filter(target(ids)[:, -1].float(), k).softmax(-1)[0]

    p1 = probs(idx)
    joint = torch.zeros(16, 16, dtype=torch.double)
    for a in p1.nonzero().flatten().tolist():
        joint[a] = p1[a] * probs(torch.cat([idx, torch.tensor([[a]])], 1))
    n, g = 1000, torch.Generator().manual_seed(1)
    counts = torch.zeros(16, 16, dtype=torch.double)
    for _ in range(n):
        a, b = speculative_generate(target, draft, idx, 2, num_draft=2, top_k=k, generator=g)[0, 4:].tolist()
        counts[a, b] += 1
    support = joint > 0
    assert counts[~support].sum() == 0  # nothing outside the target's top-k is ever produced
    expected = joint[support] * n
    chi2 = float(((counts[support] - expected) ** 2 / expected).sum())
    assert chi2 < 27.9, chi2  # chi-square 99.9% quantile for 8 degrees of freedom


def test_speculative_bad_arguments(model, draft):
    with pytest.raises(ValueError, match="one sequence at a time"):
        speculative_generate(model, draft, prompts(0, B=2), 4)
    with pytest.raises(ValueError, match="share a vocabulary"):
        speculative_generate(model, make_model(vocab=32), prompts(0, B=1, V=32), 4)
    with pytest.raises(ValueError, match="num_draft must be an int >= 1"):
        speculative_generate(model, draft, prompts(0, B=1), 4, num_draft=0)


# --------------------------------------------------------------------------- torch.compile
def test_compiled_decode_step_gives_the_same_tokens(model):
    # "aot_eager" traces the step with dynamo and AOTAutograd (graph breaks, guards and
    # recompiles all show up) without inductor's slow C++ code generation on this CPU.
    idx = torch.tensor([[0, 0, 5, 9, 2], [8, 4, 1, 1, 3]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    eager = generate(model, idx, 12, temperature=0, attention_mask=mask)
    compiled = generate(model, idx, 12, temperature=0, attention_mask=mask, compile="aot_eager")
    assert torch.equal(eager, compiled)


def test_compiled_decode_is_one_graph_for_every_step(model):
    # The fixed-shape cache keeps its fill level as a tensor, so no step specialises on a
    # Python int: a whole generation compiles once (CUDA graphs need exactly that).
    import torch._dynamo
    from torch._dynamo.utils import counters

    fresh = make_model(3)  # a model no other test compiled
    torch._dynamo.reset()
    counters.clear()
    idx = prompts(4)
    out = generate(fresh, idx, 10, temperature=0, compile="aot_eager")
    assert torch.equal(out, generate(fresh, idx, 10, temperature=0))
    assert counters["stats"]["unique_graphs"] == 1
    assert not counters["graph_break"]
    # Another length in the same cache-size bucket reuses the graph.
    out = generate(fresh, idx, 17, temperature=0, compile="aot_eager")
    assert torch.equal(out, generate(fresh, idx, 17, temperature=0))
    assert counters["stats"]["unique_graphs"] == 1


def test_compile_argument_picks_a_mode_or_a_backend(monkeypatch):
    from llmnotes.sampling import decode as sampling

    seen = []
    monkeypatch.setattr(torch, "compile", lambda model, **kw: seen.append(kw) or model)
    for how in ("reduce-overhead", "aot_eager"):
        sampling._compiled_forward(make_model(5), how)
    assert seen == [{"mode": "reduce-overhead"}, {"backend": "aot_eager"}]


@pytest.mark.skipif(os.environ.get("LLMNOTES_SLOW") != "1",
                    reason="inductor compilation takes about a minute on a 2-core CPU; set LLMNOTES_SLOW=1")
def test_inductor_compiled_decode_gives_the_same_tokens(model):
    idx = prompts(1)
    assert torch.equal(generate(model, idx, 16, temperature=0),
                       generate(model, idx, 16, temperature=0, compile=True))


# --------------------------------------------------------------------------- command line
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from llmnotes import BPETokenizer
    from llmnotes.pretrained import ASSETS

    tok = BPETokenizer.from_pretrained(ASSETS / "tokenizer")
    path = tmp_path_factory.mktemp("cli_model")
    make_model(3, vocab=tok.vocab_size, scale=1.0).save_pretrained(path)
    tok.save(path)
    return path, tok


def test_cli_sample_greedy_matches_generate(model_dir, capsys):
    from llmnotes.cli import main

    path, tok = model_dir
    assert main(["sample", "--model", str(path), "--prompt", "Once upon", "--max-new-tokens", "8",
                 "--temperature", "0", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out.rstrip("\n")
    model = GPT.from_pretrained(path)
    ids = tok.encode("Once upon")
    out = generate(model, torch.tensor([ids]), 8, temperature=0, eos_id=tok.eot_id)[0, len(ids):].tolist()
    if tok.eot_id in out:
        out = out[: out.index(tok.eot_id)]
    assert printed == "Once upon" + tok.decode(out)


def test_cli_sample_stream_and_seed(model_dir, capsys):
    from llmnotes.cli import main

    path, _ = model_dir
    args = ["sample", "--model", str(path), "--prompt", "The", "--max-new-tokens", "6", "--top-k", "20",
            "--top-p", "0.9", "--seed", "4", "--device", "cpu"]
    assert main(args) == 0
    plain = capsys.readouterr().out
    assert main(args + ["--stream"]) == 0
    assert capsys.readouterr().out == plain  # streaming prints the same text, piece by piece
    assert main(args[:-2] + ["--top-p", "1.5"]) == 2
    assert "top_p must be in (0, 1], got 1.5" in capsys.readouterr().err
