"""One generation path: GenerationConfig's checks, generate(config=) == generate(**fields), the
cancel signal and the reused cache of stream, and every text-in/text-out caller (complete, the
server's engine, instruction replies, RAG, llmnotes sample) giving generate's tokens."""

from __future__ import annotations

import dataclasses
import sys
import threading
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # pytest-markdown-docs imports test files without it
from serve_fixtures import nano_model, tokenizer  # noqa: E402

from llmnotes.sampling import GenerationConfig, complete, generate, stream  # noqa: E402


@pytest.fixture(scope="module")
def tok():
    return tokenizer()


@pytest.fixture(scope="module")
def model():
    model = nano_model(block_size=96)
    with torch.no_grad():  # peaked next-token distributions: greedy and sampled tokens are not ties
        model.transformer.wte.weight.mul_(6.0)
    return model


def greedy_reply(model, tok, prompt: str, n: int) -> list[int]:
    """The oracle for the callers: generate's greedy tokens for one prompt, cut at end-of-text."""
    ids = torch.tensor([tok.encode(prompt, allowed_special="none")])
    row = generate(model, ids, n, temperature=0, eos_id=tok.eot_id)[0, ids.shape[1]:].tolist()
    return row[: row.index(tok.eot_id)] if tok.eot_id in row else row


# --------------------------------------------------------------------------- the config
BAD = [
    ("max_new_tokens", -1, ">= 0"), ("max_new_tokens", 2.5, ">= 0"), ("max_new_tokens", True, ">= 0"),
    ("temperature", -0.5, ">= 0"), ("temperature", float("nan"), ">= 0"), ("temperature", "hot", ">= 0"),
    ("top_k", 0, ">= 1"), ("top_k", 1.5, ">= 1"),
    ("top_p", 0.0, "in (0, 1]"), ("top_p", 1.5, "in (0, 1]"),
    ("min_p", -0.1, "in [0, 1]"), ("min_p", 2, "in [0, 1]"),
    ("typical_p", 1.0, "in (0, 1)"), ("typical_p", 0, "in (0, 1)"),
    ("repetition_penalty", 0.0, "> 0"), ("repetition_penalty", float("inf"), "> 0"),
    ("frequency_penalty", 2.5, "in [-2, 2]"), ("presence_penalty", -3, "in [-2, 2]"),
    ("no_repeat_ngram_size", 0, ">= 1"),
    ("bad_words_ids", [], "non-empty list"), ("bad_words_ids", [[1], []], "non-empty list"),
    ("bad_words_ids", [[-1]], "token ids >= 0"), ("bad_words_ids", [1, 2], "lists of token ids"),
    ("logit_bias", {}, "non-empty dict"), ("logit_bias", {3: 101}, "[-100, 100]"),
    ("logit_bias", {-1: 1.0}, "token_id >= 0"),
    ("min_new_tokens", -2, ">= 0"), ("eos_id", -1, ">= 0"), ("pad_id", "0", ">= 0"),
    ("stop", "", "non-empty string"), ("stop", ["a", ""], "non-empty strings"), ("stop", 3, "string"),
    ("seed", 1.0, "an int"), ("seed", True, "an int"),
    ("compile", "", "torch.compile mode"), ("compile", 1, "torch.compile mode"),
]


@pytest.mark.parametrize("field,value,accepted", BAD, ids=[f"{f}={v!r}" for f, v, _ in BAD])
def test_each_bad_value_raises_naming_field_value_and_range(field, value, accepted):
    with pytest.raises(ValueError) as err:
        GenerationConfig(**{field: value})
    message = str(err.value)
    assert message.startswith(f"{field} must be") and accepted in message and repr(value) in message
    with pytest.raises(ValueError, match=f"^{field} must be"):  # the keyword route checks the same way
        GenerationConfig().replace(**{field: value})


def test_every_bad_value_table_covers_every_field():
    assert {f for f, _, _ in BAD} == {f.name for f in dataclasses.fields(GenerationConfig)}


def test_good_values_pass_and_every_field_is_documented():
    from llmnotes.cli.common import field_docs

    GenerationConfig(max_new_tokens=0, temperature=0, top_k=1, top_p=1.0, min_p=0.0, typical_p=0.5,
                     repetition_penalty=1.2, frequency_penalty=-2, presence_penalty=2, no_repeat_ngram_size=2,
                     bad_words_ids=[[1, 2]], logit_bias={0: -100}, min_new_tokens=3, eos_id=0, pad_id=0,
                     stop=["."], seed=-5, compile="reduce-overhead")
    docs = field_docs(GenerationConfig)
    assert all(docs.get(f.name) for f in dataclasses.fields(GenerationConfig)), set(
        f.name for f in dataclasses.fields(GenerationConfig)) - set(docs)


def test_unknown_keyword_is_a_type_error_naming_the_valid_ones(model):
    idx = torch.zeros(1, 2, dtype=torch.long)
    with pytest.raises(TypeError, match=r"'top_kk'.*top_k, top_p.*other keywords: tokenizer"):
        generate(model, idx, 3, top_kk=5)
    with pytest.raises(TypeError, match="'temprature'"):
        GenerationConfig().replace(temprature=0)
    with pytest.raises(TypeError, match="config must be a GenerationConfig"):
        generate(model, idx, 3, 0.8)  # the old positional temperature


# --------------------------------------------------------------------------- generate / stream
@pytest.mark.parametrize("settings", [
    dict(temperature=0),
    dict(temperature=0, repetition_penalty=1.3, no_repeat_ngram_size=2, eos_id=5, min_new_tokens=2),
    dict(temperature=0.9, top_k=20, top_p=0.9, frequency_penalty=0.5, seed=11),
    dict(temperature=1.3, min_p=0.05, logit_bias={3: 4.0}, bad_words_ids=[[7]], seed=2),
])
def test_generate_config_equals_generate_keywords(model, settings):
    idx = torch.randint(0, 300, (3, 5), generator=torch.Generator().manual_seed(0))
    by_keywords = generate(model, idx, 12, **settings)
    config = GenerationConfig(max_new_tokens=12, **settings)
    assert torch.equal(generate(model, idx, config=config), by_keywords)
    assert torch.equal(generate(model, idx, 12, GenerationConfig(**settings)), by_keywords)
    # keywords override a config; the positional max_new_tokens overrides both
    other = GenerationConfig(max_new_tokens=3, temperature=0.5, top_k=2, seed=99)
    assert torch.equal(generate(model, idx, 12, other, **{"top_k": None, "seed": None, **settings,
                                                          "temperature": settings["temperature"]}), by_keywords)


def test_seed_is_a_seeded_generator(model):
    idx = torch.zeros(2, 3, dtype=torch.long)
    a = generate(model, idx, 10, temperature=1.0, seed=7)
    assert torch.equal(a, generate(model, idx, 10, temperature=1.0, generator=torch.Generator().manual_seed(7)))
    assert not torch.equal(a, generate(model, idx, 10, temperature=1.0, seed=8))
    with pytest.raises(ValueError, match="not both"):
        generate(model, idx, 2, seed=1, generator=torch.Generator())


def test_should_stop_cancels_the_stream_between_tokens(model):
    idx = torch.zeros(1, 3, dtype=torch.long)
    cancel = threading.Event()
    got = []
    for tok in stream(model, idx, 30, temperature=0, should_stop=cancel):
        got.append(int(tok[0]))
        if len(got) == 4:
            cancel.set()  # the consumer leaves: no fifth token, no further model call
    assert len(got) == 4
    assert got == generate(model, idx, 4, temperature=0)[0, 3:].tolist()
    calls = iter(range(100))
    assert generate(model, idx, 30, temperature=0, should_stop=lambda: next(calls) >= 2).shape[1] == 3 + 2
    assert torch.equal(generate(model, idx, 30, should_stop=lambda: True), idx)  # before the prefill


def test_stream_from_a_reused_cache_equals_a_fresh_run(model):
    prompt = torch.randint(0, 300, (1, 9), generator=torch.Generator().manual_seed(3))
    cache = model.make_cache(1)
    model(prompt[:, :6], cache=cache)  # the first 6 prompt positions are already cached
    seen = []
    out = list(stream(model, prompt, 10, temperature=0, cache=cache, on_logits=seen.append))
    assert torch.equal(torch.stack(out, 1), generate(model, prompt, 10, temperature=0)[:, 9:])
    assert len(seen) == 10 and seen[0].shape == (1, model.config.vocab_size)
    assert cache.seq_len == 9 + 10 - 1  # the last token was chosen, never fed
    with pytest.raises(ValueError, match="must hold fewer"):
        list(stream(model, prompt, 2, temperature=0, cache=cache))


# --------------------------------------------------------------------------- the text callers
def test_complete_is_generate_decoded_and_batches_like_single_prompts(model, tok):
    prompts = ["Once upon a time", "The dog", "Tom"]
    replies = complete(model, tok, prompts, max_new_tokens=12, temperature=0)
    for p, r in zip(prompts, replies):  # left-padded batch == each prompt alone == generate
        assert r == tok.decode(greedy_reply(model, tok, p, 12))
        assert complete(model, tok, p, GenerationConfig(max_new_tokens=12, temperature=0)) == r
    text = complete(model, tok, "Once upon a time", max_new_tokens=20, temperature=0)
    s = text[-4:-2]
    assert complete(model, tok, "Once upon a time", max_new_tokens=20, temperature=0, stop=s) == text[:text.find(s)]
    assert isinstance(complete(model, tok, "", max_new_tokens=3, temperature=0), str)  # starts from eos
    with pytest.raises(TypeError, match="prompt must be"):
        complete(model, tok, 3)


def test_engine_tokens_are_generates_greedy_and_sampled(model, tok):
    from llmnotes.serve.engine import Engine
    from llmnotes.serve.protocol import SamplingParams

    engine = Engine(model, tok, eos_id=tok.eot_id, prefix_cache=False)
    for prompt in ("Once upon a time", "The cat sat"):
        r = engine.generate(tok.encode(prompt), SamplingParams(max_tokens=15, temperature=0.0))
        assert r.token_ids == greedy_reply(model, tok, prompt, 15)
    ids = tok.encode("Lily")  # sampled: same seed, same settings -> the same draws as generate
    params = SamplingParams(max_tokens=15, temperature=0.8, top_p=0.9, frequency_penalty=0.4, seed=5)
    row = generate(model, torch.tensor([ids]), config=params.to_config(tok.eot_id))[0, len(ids):].tolist()
    row = row[: row.index(tok.eot_id)] if tok.eot_id in row else row
    assert engine.generate(ids, params).token_ids == row


def test_respond_and_rag_answers_are_generates_greedy_tokens(model, tok):
    from llmnotes.finetune import respond
    from llmnotes.rag import generate_local

    prompts = ["Instruction: say hi\n\nResponse:", "Q: why?\nA:"]
    assert respond(model, tok, prompts, max_new_tokens=10) == [
        tok.decode(greedy_reply(model, tok, p, 10)).strip() for p in prompts]
    answer = tok.decode(greedy_reply(model, tok, prompts[1], 16))
    assert generate_local(prompts[1], model, tok, max_new_tokens=16) == answer.split("\n\n")[0].strip()


def test_sample_command_prints_completes_text(model, tok, capsys, monkeypatch):
    import llmnotes.cli.sample as sample
    from llmnotes.cli import main

    monkeypatch.setattr(sample, "load_model", lambda name, device, for_decode: (model, tok))
    assert main(["sample", "--prompt", "The dog", "--temperature", "0", "--max-new-tokens", "12"]) == 0
    assert capsys.readouterr().out == "The dog" + tok.decode(greedy_reply(model, tok, "The dog", 12)) + "\n"
    assert main(["sample", "--prompt", "The dog", "--temperature", "0", "--max-new-tokens", "12", "--stream"]) == 0
    assert capsys.readouterr().out == "The dog" + tok.decode(greedy_reply(model, tok, "The dog", 12)) + "\n"


def test_load_pretrained_for_decode_gives_the_same_tokens():
    from llmnotes import load_pretrained

    plain, tok = load_pretrained("tiny")
    fast, _ = load_pretrained("tiny", for_decode=True)
    idx = torch.tensor([tok.encode("Once upon a time")])
    assert torch.equal(generate(plain, idx, 16, temperature=0), generate(fast, idx, 16, temperature=0))


def test_generation_config_is_a_top_level_name():
    import llmnotes

    assert llmnotes.GenerationConfig is GenerationConfig and "GenerationConfig" in llmnotes.__all__
