"""The server's pieces without HTTP: text streaming, caches, the engine, limits, validation."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # pytest-markdown-docs imports test files without it
from serve_fixtures import nano_model, reference_greedy, tokenizer  # noqa: E402

from llmnotes.serve.engine import Engine, ResponseCache, Result, TextStream, common_prefix  # noqa: E402
from llmnotes.serve.limits import Admission, QueueFull, QueueTimeout, RateLimiter, TokenBucket  # noqa: E402
from llmnotes.prompting import ChatTemplate  # noqa: E402
from llmnotes.serve.protocol import (APIError, SamplingParams, parse_chat_request,  # noqa: E402
                                     parse_completion_request)


def byte_decode(ids):
    return bytes(ids).decode("utf-8", errors="replace")


def run_stream(text: str, stop: list[str]) -> tuple[list[str], bool, str]:
    s = TextStream(byte_decode, stop)
    deltas, stopped = [], False
    for b in text.encode("utf-8"):
        d, stopped = s.push(b)
        deltas.append(d)
        if stopped:
            break
    deltas.append(s.flush())
    return deltas, stopped, "".join(deltas)


# ---- TextStream -------------------------------------------------------------------------------


def test_text_stream_never_emits_half_characters():
    deltas, stopped, text = run_stream("héllo wörld ✓", [])
    assert text == "héllo wörld ✓" and not stopped
    assert all("\ufffd" not in d for d in deltas)
    assert deltas[1] == ""  # the first byte of "é" alone is held back


@pytest.mark.parametrize("text, stop, expected", [
    ("one two\nUser: three", ["\nUser:"], "one two"),
    ("abcSTOPdef", ["STOP", "cS"], "ab"),        # the earliest match wins
    ("no stop here", ["zzz"], "no stop here"),
    ("ends with a partial sto", ["stop!"], "ends with a partial sto"),  # released by flush
    ("ÄÖÜ|end", ["|"], "ÄÖÜ"),
])
def test_text_stream_cuts_at_stop_sequences(text, stop, expected):
    deltas, stopped, out = run_stream(text, stop)
    assert out == expected
    assert stopped == any(s in text for s in stop)
    # Nothing that is later cut away was ever emitted.
    emitted = ""
    for d in deltas:
        emitted += d
        assert expected.startswith(emitted)


def test_text_stream_holds_back_a_possible_stop_prefix():
    s = TextStream(byte_decode, ["\nUser:"])
    outs = [s.push(b)[0] for b in b"hi\nUs"]
    assert "".join(outs) == "hi"  # "\nUs" might become "\nUser:"
    assert s.push(ord("e"))[0] == "" and s.push(ord("x"))[0] == "\nUsex"


# ---- caches -----------------------------------------------------------------------------------


def test_response_cache_is_lru_and_bounded():
    cache = ResponseCache(2)
    r = [Result([], [i], "length", 1) for i in range(3)]
    cache.put("a", r[0])
    cache.put("b", r[1])
    assert cache.get("a") is r[0]  # "a" is now the most recently used
    cache.put("c", r[2])           # evicts "b", the least recently used
    assert cache.get("b") is None and cache.get("a") is r[0] and cache.get("c") is r[2]
    assert len(cache) == 2 and cache.hits == 3 and cache.misses == 1
    with pytest.raises(ValueError, match="max_entries"):
        ResponseCache(-1)
    off = ResponseCache(0)
    off.put("a", r[0])
    assert off.get("a") is None


def test_common_prefix():
    assert common_prefix([1, 2, 3], [1, 2, 4, 5]) == 2
    assert common_prefix([], [1]) == 0
    assert common_prefix([7, 8], [7, 8]) == 2


@pytest.fixture(scope="module")
def model():
    return nano_model()


def test_engine_greedy_matches_reference(model):
    tok = tokenizer()
    engine = Engine(model, tok, eos_id=tok.eot_id)
    for prompt in ("Once upon a time", "The dog"):
        result = engine.generate(tok.encode(prompt), SamplingParams(max_tokens=10, temperature=0.0))
        assert result.text == reference_greedy(model, tok, prompt, 10)


def test_prefix_cache_reuses_and_agrees_with_a_fresh_cache(model):
    tok = tokenizer()
    cached = Engine(model, tok, eos_id=tok.eot_id, prefix_cache=True)
    fresh = Engine(model, tok, eos_id=tok.eot_id, prefix_cache=False)
    params = SamplingParams(max_tokens=8, temperature=0.0)
    turn1 = tok.encode("User: hello there\n\nAssistant:")
    r1 = cached.generate(turn1, params)
    assert r1.prefix_hit == 0
    turn2 = turn1 + r1.token_ids + tok.encode("\n\nUser: and more?\n\nAssistant:")
    r2 = cached.generate(turn2, params)
    # Every position of the first request that is in the second was reused, except the last
    # generated token (never fed through the model).
    assert r2.prefix_hit == len(turn1) + len(r1.token_ids) - 1
    assert r2.token_ids == fresh.generate(turn2, params).token_ids
    r3 = cached.generate(turn1, params)  # a shorter prompt: crop back, reuse all but the last token
    assert r3.prefix_hit == len(turn1) - 1 and r3.token_ids == r1.token_ids


def test_engine_stops_at_eos_and_validates(model):
    tok = tokenizer()
    engine = Engine(model, tok, eos_id=tok.eot_id)
    with pytest.raises(ValueError, match="at least one token"):
        engine.generate([], SamplingParams())
    with pytest.raises(ValueError, match="context length"):
        engine.generate([1] * 120, SamplingParams(max_tokens=20))
    ids = tok.encode("x")
    first = engine.generate(ids, SamplingParams(max_tokens=1, temperature=0.0)).token_ids[0]
    engine_eos = Engine(model, tok, eos_id=first)  # pretend the greedy first token is end-of-text
    r = engine_eos.generate(ids, SamplingParams(max_tokens=5, temperature=0.0))
    assert r.finish_reason == "stop" and r.token_ids == [] and r.text == ""


def test_engine_cancel_and_deadline(model):
    import threading
    import time

    tok = tokenizer()
    engine = Engine(model, tok)
    cancel = threading.Event()
    seen = []

    def on_delta(d):
        seen.append(d)
        cancel.set()  # the "client" leaves after the first piece of text

    r = engine.generate(tok.encode("abc"), SamplingParams(max_tokens=50, temperature=1.0, seed=0),
                        on_delta=on_delta, cancel=cancel)
    assert r.finish_reason == "cancelled" and len(r.token_ids) < 50
    r = engine.generate(tok.encode("abc"), SamplingParams(max_tokens=50), deadline=time.monotonic() - 1)
    assert r.finish_reason == "timeout" and r.token_ids == []


# ---- limits -----------------------------------------------------------------------------------


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_token_bucket_refills_at_its_rate():
    clock = FakeClock()
    bucket = TokenBucket(rate=2.0, burst=3, clock=clock)
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() == pytest.approx(0.5)  # empty: one token comes in 1/rate seconds
    clock.t = 0.5
    assert bucket.take() == 0.0
    clock.t = 100.0  # a long pause refills only up to the burst
    assert [bucket.take() for _ in range(4)][-1] > 0
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(0, 1)
    with pytest.raises(ValueError, match="burst"):
        TokenBucket(1, 0)


def test_rate_limiter_keeps_one_bucket_per_key_and_forgets_old_keys():
    clock = FakeClock()
    limiter = RateLimiter(rate=1.0, burst=1, max_keys=2, clock=clock)
    assert limiter.check("a") == 0.0 and limiter.check("a") > 0
    assert limiter.check("b") == 0.0
    limiter.check("c")  # a third key evicts "a", the least recently used
    assert limiter.check("a") == 0.0


def test_admission_bounds_running_and_waiting():
    async def main():
        adm = Admission(max_concurrent=1, max_queue=1)
        await adm.acquire(timeout=1)
        waiter = asyncio.create_task(adm.acquire(timeout=5))
        await asyncio.sleep(0.01)
        assert adm.waiting == 1
        with pytest.raises(QueueFull):
            await adm.acquire(timeout=1)
        await adm.release()
        await waiter  # the waiter gets the freed slot
        assert adm.active == 1 and adm.waiting == 0
        with pytest.raises(QueueTimeout):
            await adm.acquire(timeout=0.05)
        assert adm.waiting == 0
        await adm.release()
        assert adm.active == 0
        assert adm.retry_after(2.0) == 1

    asyncio.run(main())
    with pytest.raises(ValueError, match="max_concurrent"):
        Admission(0, 1)


# ---- request validation -----------------------------------------------------------------------


def parse(body, **kw):
    return parse_completion_request(body, model_name="m", max_tokens_limit=100, max_prompt_chars=50, **kw)


def test_parse_completion_defaults_and_fields():
    req = parse({"model": "m", "prompt": "hi"})
    assert req.params.max_tokens == 16 and req.params.temperature == 1.0 and req.params.stop == []
    req = parse({"model": "m", "prompt": ["hi"], "stop": "\n", "seed": 3, "logprobs": 2, "stream": True,
                 "stream_options": {"include_usage": True}})
    assert req.prompt == "hi" and req.params.stop == ["\n"] and req.params.logprobs == 2 and req.include_usage
    assert parse({"model": "m", "prompt": [1, 2, 3]}).prompt == [1, 2, 3]


@pytest.mark.parametrize("body, param, status", [
    ({"prompt": "x"}, "model", 400),
    ({"model": "other", "prompt": "x"}, "model", 404),
    ({"model": "m"}, "prompt", 400),
    ({"model": "m", "prompt": "x" * 51}, "prompt", 400),
    ({"model": "m", "prompt": "x", "temperature": True}, "temperature", 400),
    ({"model": "m", "prompt": "x", "temperature": float("nan")}, "temperature", 400),
    ({"model": "m", "prompt": "x", "top_p": 1.5}, "top_p", 400),
    ({"model": "m", "prompt": "x", "max_tokens": 101}, "max_tokens", 400),
    ({"model": "m", "prompt": "x", "stop": [""]}, "stop", 400),
    ({"model": "m", "prompt": "x", "stream": "yes"}, "stream", 400),
    ({"model": "m", "prompt": "x", "stream_options": {"include_usage": True}}, "stream_options", 400),
    ({"model": "m", "prompt": "x", "logprobs": 6}, "logprobs", 400),
    ({"model": "m", "prompt": "x", "echo": True}, "echo", 400),
    ({"model": "m", "prompt": "x", "best_of": 3}, "best_of", 400),
])
def test_parse_completion_errors_name_the_field(body, param, status):
    with pytest.raises(APIError) as exc:
        parse(body)
    assert exc.value.status == status and exc.value.param == param
    assert set(exc.value.body()["error"]) == {"message", "type", "param", "code"}


def test_parse_chat():
    kw = dict(model_name="m", max_tokens_limit=100, max_prompt_chars=50, default_max_tokens=30)
    req = parse_chat_request({"model": "m", "messages": [
        {"role": "developer", "content": "sys"},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}],
        "logprobs": True, "top_logprobs": 2, "max_completion_tokens": 7}, **kw)
    assert req.messages == [{"role": "system", "content": "sys"}, {"role": "user", "content": "ab"}]
    assert req.params.logprobs == 2 and req.params.max_tokens == 7 and req.max_tokens_given
    for bad, param in [({"messages": "hi"}, "messages"),
                       ({"messages": [{"role": "user"}]}, "messages[0].content"),
                       ({"messages": [{"role": "user", "content": "x" * 60}]}, "messages"),
                       ({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2}, "top_logprobs"),
                       ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
                        "messages[0].content")]:
        with pytest.raises(APIError) as exc:
            parse_chat_request({"model": "m"} | bad, **kw)
        assert exc.value.param == param, bad


def test_default_chat_template():
    t = ChatTemplate()
    text = t.render([{"role": "system", "content": "Be kind."}, {"role": "user", "content": " Hi "}])
    assert text == "System: Be kind.\n\nUser: Hi\n\nAssistant:"
    assert "\nUser:" in t.stop


def test_chat_page_is_self_contained():
    # No CDN, no build step: every file the page loads is served by the package itself.
    import re

    from llmnotes.serve import WEB_DIR

    names = sorted(p.name for p in WEB_DIR.iterdir())
    assert names == ["chat.css", "chat.js", "index.html"]
    html = (WEB_DIR / "index.html").read_text(encoding="utf-8")
    assert re.findall(r'(?:src|href)="([^"]+)"', html) == ["/static/chat.css", "/static/chat.js"]
    for name in names:
        text = (WEB_DIR / name).read_text(encoding="utf-8")
        assert "http://" not in text and "https://" not in text, name
    js = (WEB_DIR / "chat.js").read_text(encoding="utf-8")
    assert "textContent" in js and "innerHTML" not in js  # replies are shown as text, never as HTML
