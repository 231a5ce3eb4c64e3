"""The OpenAI-compatible server, driven over real HTTP by the official ``openai`` client."""

from __future__ import annotations

import json
import logging
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # pytest-markdown-docs imports test files without it
from serve_fixtures import MODEL_NAME, SlowModel, nano_model, reference_greedy, tokenizer  # noqa: E402

from llmnotes.sampling import generate
from llmnotes.serve import BackgroundServer, create_app

KEY = "sk-test-123"


class LogLines(logging.Handler):
    """Collects the server's JSON request log lines."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if msg.startswith("{"):
            self.lines.append(json.loads(msg))


@pytest.fixture(scope="module")
def model():
    return nano_model()


@pytest.fixture(scope="module")
def server(model):
    logger = logging.getLogger("llmnotes.serve")
    handler = LogLines()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    app = create_app(model, tokenizer(), model_name=MODEL_NAME, api_key=KEY)
    with BackgroundServer(app) as srv:
        srv.log = handler
        yield srv
    logger.removeHandler(handler)


@pytest.fixture()
def client(server):
    return openai.OpenAI(api_key=KEY, base_url=server.url + "/v1", max_retries=0, timeout=30)


def metric(url: str, line_start: str) -> float:
    """The value of the first /metrics sample whose line starts with ``line_start`` (0 if absent)."""
    for line in httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {KEY}"}).text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# ---- the happy paths ---------------------------------------------------------------------------


def test_health_models_and_page(server):
    assert httpx.get(server.url + "/health").json() == {"status": "ok", "model": MODEL_NAME}
    page = httpx.get(server.url + "/")  # the chat page needs no key; its API calls do
    assert page.status_code == 200 and "llmnotes chat" in page.text
    assert httpx.get(server.url + "/static/chat.js").status_code == 200
    models = openai.OpenAI(api_key=KEY, base_url=server.url + "/v1").models.list()
    assert [m.id for m in models.data] == [MODEL_NAME]


def test_completion_equals_reference_greedy_decoding(client, model):
    r = client.completions.create(model=MODEL_NAME, prompt="Once upon a time", max_tokens=12, temperature=0)
    assert r.choices[0].text == reference_greedy(model, tokenizer(), "Once upon a time", 12)
    assert r.object == "text_completion" and r.model == MODEL_NAME
    n_prompt = len(tokenizer().encode("Once upon a time"))
    assert r.usage.prompt_tokens == n_prompt
    assert r.usage.total_tokens == n_prompt + r.usage.completion_tokens
    assert r.choices[0].finish_reason in ("length", "stop")


def test_chat_uses_template_and_stops_at_the_next_turn(client, model):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Tell me a story."}]
    r = client.chat.completions.create(model=MODEL_NAME, messages=messages, max_tokens=20, temperature=0)
    prompt = "System: Be brief.\n\nUser: Tell me a story.\n\nAssistant:"
    expected = reference_greedy(model, tokenizer(), prompt, 20)
    for stop in ("\nUser:", "\nSystem:"):
        expected = expected.split(stop)[0]
    assert r.choices[0].message.content == expected
    assert r.choices[0].message.role == "assistant"
    assert r.usage.prompt_tokens == len(tokenizer().encode(prompt))


def test_streaming_concatenates_to_the_full_answer(client, model):
    kwargs = dict(model=MODEL_NAME, prompt="The cat", max_tokens=15, temperature=0)
    # Streamed first, so the answer is generated live (not replayed from the response cache).
    with client.completions.create(**kwargs, stream=True, stream_options={"include_usage": True}) as stream:
        chunks = list(stream)
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == reference_greedy(model, tokenizer(), "The cat", 15)
    assert len([c for c in chunks if c.choices and c.choices[0].text]) > 1  # really streamed
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert any(c.choices and c.choices[0].finish_reason for c in chunks)
    assert client.completions.create(**kwargs).choices[0].text == text

    messages = [{"role": "user", "content": "Hi there"}]
    with client.chat.completions.create(model=MODEL_NAME, messages=messages, max_tokens=10, temperature=0,
                                        stream=True) as stream:
        chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks)
    expected = reference_greedy(model, tokenizer(), "User: Hi there\n\nAssistant:", 10)
    assert streamed == expected.split("\nUser:")[0].split("\nSystem:")[0]


def test_raw_sse_format(server):
    body = {"model": MODEL_NAME, "prompt": "A", "max_tokens": 3, "temperature": 0, "stream": True}
    with httpx.stream("POST", server.url + "/v1/completions", json=body,
                      headers={"Authorization": f"Bearer {KEY}"}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = r.read().decode()
    events = raw.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    for e in events[:-2]:
        assert e.startswith("data: ") and json.loads(e[6:])["object"] == "text_completion"


def test_frequency_penalty_matches_sampling_generate(client, model):
    tok = tokenizer()
    ids = torch.tensor([tok.encode("the the the")])
    ref = generate(model, ids, 12, temperature=0, frequency_penalty=1.5, presence_penalty=0.5)[0, ids.shape[1]:]
    ref = ref.tolist()
    if tok.eot_id in ref:
        ref = ref[:ref.index(tok.eot_id)]
    r = client.completions.create(model=MODEL_NAME, prompt="the the the", max_tokens=12, temperature=0,
                                  frequency_penalty=1.5, presence_penalty=0.5)
    assert r.choices[0].text == tok.decode(ref)


def test_seed_makes_sampling_reproducible(client):
    kw = dict(model=MODEL_NAME, prompt="Once", max_tokens=20, temperature=1.0, top_p=0.9)
    a = client.completions.create(**kw, seed=7).choices[0].text
    b = client.completions.create(**kw, seed=7).choices[0].text
    others = {client.completions.create(**kw, seed=s).choices[0].text for s in range(8, 12)}
    assert a == b
    assert len(others | {a}) > 1  # different seeds give different samples


def test_logprobs_are_the_models_log_softmax(client, model):
    tok = tokenizer()
    r = client.completions.create(model=MODEL_NAME, prompt="Hello", max_tokens=4, temperature=0, logprobs=3)
    lp = r.choices[0].logprobs
    ids = tok.encode("Hello")
    out = []
    for token_lp, top in zip(lp.token_logprobs, lp.top_logprobs):
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([ids + out]))[0, -1], -1)
        best = int(logp.argmax())
        assert token_lp == pytest.approx(float(logp[best]), abs=1e-4)
        # A dict keyed by token text: byte tokens that all print as "\ufffd" share one key.
        assert 1 <= len(top) <= 3 and max(top.values()) == pytest.approx(token_lp, abs=1e-4)
        out.append(best)
    chat = client.chat.completions.create(model=MODEL_NAME, messages=[{"role": "user", "content": "x"}],
                                          max_tokens=3, temperature=0, logprobs=True, top_logprobs=2)
    content = chat.choices[0].logprobs.content
    assert 1 <= len(content) <= 3 and all(len(c.top_logprobs) == 2 and c.logprob <= 0 for c in content)


# ---- errors ------------------------------------------------------------------------------------


def test_missing_or_wrong_key_is_401(server):
    for key in ("wrong", ""):
        bad = openai.OpenAI(api_key=key or "unused", base_url=server.url + "/v1", max_retries=0)
        if not key:
            bad = openai.OpenAI(api_key="x", base_url=server.url + "/v1", max_retries=0,
                                default_headers={"Authorization": ""})
        with pytest.raises(openai.AuthenticationError) as exc:
            bad.completions.create(model=MODEL_NAME, prompt="hi", max_tokens=2)
        assert exc.value.body["code"] == "invalid_api_key"
    r = httpx.get(server.url + "/v1/models")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("kwargs, param", [
    (dict(temperature=2.5), "temperature"),
    (dict(top_p=0.0), "top_p"),
    (dict(n=2), "n"),
    (dict(max_tokens=0), "max_tokens"),
    (dict(max_tokens=10_000), "max_tokens"),
    (dict(presence_penalty=-3), "presence_penalty"),
    (dict(stop=["a", "b", "c", "d", "e"]), "stop"),
    (dict(prompt="word " * 200, max_tokens=5), "prompt"),  # longer than the 128-token context
    (dict(prompt={"not": "a prompt"}), "prompt"),
    (dict(max_tokens="10"), "max_tokens"),
])
def test_bad_parameters_are_400_naming_the_field(client, kwargs, param):
    args = dict(model=MODEL_NAME, prompt="hi", max_tokens=4) | kwargs
    with pytest.raises(openai.BadRequestError) as exc:
        client.completions.create(**args)
    assert exc.value.body["param"] == param
    assert param in exc.value.body["message"] or "context length" in exc.value.body["message"]


def test_bad_chat_requests(client):
    with pytest.raises(openai.BadRequestError, match="messages"):
        client.chat.completions.create(model=MODEL_NAME, messages=[])
    with pytest.raises(openai.BadRequestError, match="role"):
        client.chat.completions.create(model=MODEL_NAME, messages=[{"role": "wizard", "content": "x"}])
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])


def test_malformed_and_oversized_bodies(server):
    h = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    r = httpx.post(server.url + "/v1/completions", content=b"{not json", headers=h)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    r = httpx.post(server.url + "/v1/completions", content=b"[1, 2]", headers=h)
    assert r.status_code == 400 and "JSON object" in r.json()["error"]["message"]
    big = json.dumps({"model": MODEL_NAME, "prompt": "x" * 2_000_000}).encode()
    r = httpx.post(server.url + "/v1/completions", content=big, headers=h)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"


def test_special_token_text_in_a_prompt_stays_plain_text(client, model):
    # Typed "<|endoftext|>" must not become the special token (a prompt-injection vector).
    r = client.completions.create(model=MODEL_NAME, prompt="a <|endoftext|> b", max_tokens=1, temperature=0)
    assert r.usage.prompt_tokens == len(tokenizer().encode("a <|endoftext|> b", allowed_special="none"))
    assert r.usage.prompt_tokens > 5


# ---- caching, metrics, logs ------------------------------------------------------------------------


def test_response_cache_hits_identical_greedy_requests(client, server):
    hits = metric(server.url, 'llmnotes_response_cache_lookups_total{result="hit"}')
    kw = dict(model=MODEL_NAME, prompt="A cached prompt", max_tokens=10, temperature=0)
    a = client.completions.create(**kw)
    b = client.completions.create(**kw)
    with client.completions.create(**kw, stream=True) as stream:  # a hit can stream too
        c = "".join(ch.choices[0].text for ch in stream if ch.choices)
    assert a.choices[0].text == b.choices[0].text == c
    assert a.id != b.id and b.usage == a.usage
    assert metric(server.url, 'llmnotes_response_cache_lookups_total{result="hit"}') == hits + 2
    client.completions.create(**kw | {"temperature": 0.7})  # sampling: never cached
    assert metric(server.url, 'llmnotes_response_cache_lookups_total{result="hit"}') == hits + 2
    assert server.log.lines[-2]["cached"] is True


def test_metrics_count_requests_tokens_and_errors(client, server):
    before = metric(server.url, 'llmnotes_requests_total{endpoint="/v1/completions",status="200"}')
    tokens = metric(server.url, "llmnotes_completion_tokens_total")
    errors = metric(server.url, 'llmnotes_errors_total{code="invalid_value"}')
    used = 0
    for i in range(3):
        used += client.completions.create(model=MODEL_NAME, prompt=f"metrics {i}", max_tokens=5,
                                          temperature=0.5).usage.completion_tokens
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model=MODEL_NAME, prompt="x", temperature=9)
    assert metric(server.url, 'llmnotes_requests_total{endpoint="/v1/completions",status="200"}') == before + 3
    assert metric(server.url, "llmnotes_completion_tokens_total") == tokens + used
    assert metric(server.url, 'llmnotes_errors_total{code="invalid_value"}') == errors + 1
    assert metric(server.url, 'llmnotes_time_to_first_token_seconds_count{endpoint="/v1/completions"}') > 0


def test_one_json_log_line_per_request(client, server):
    n = len(server.log.lines)
    r = client.completions.create(model=MODEL_NAME, prompt="log me", max_tokens=4, temperature=0.5)
    line = server.log.lines[n]
    assert len(server.log.lines) == n + 1
    assert line["id"] == r.id and line["status"] == 200
    assert line["prompt_tokens"] == r.usage.prompt_tokens
    assert line["completion_tokens"] == r.usage.completion_tokens
    assert 0 <= (line["ttft_s"] or 0) <= line["total_s"]


def test_prefix_cache_reuses_the_shared_conversation(client, server, model):
    # A two-turn chat: the second request re-sends the first turn, whose keys/values are reused.
    turn1 = [{"role": "user", "content": "Tell me about the dog and the ball."}]
    r1 = client.chat.completions.create(model=MODEL_NAME, messages=turn1, max_tokens=8, temperature=0.9, seed=1)
    turn2 = turn1 + [{"role": "assistant", "content": r1.choices[0].message.content},
                     {"role": "user", "content": "And then?"}]
    r2 = client.chat.completions.create(model=MODEL_NAME, messages=turn2, max_tokens=8, temperature=0)
    assert server.log.lines[-1]["prefix_hit"] >= r1.usage.prompt_tokens - 1
    prompt = (f"User: {turn1[0]['content']}\n\nAssistant: {r1.choices[0].message.content.strip()}"
              "\n\nUser: And then?\n\nAssistant:")
    expected = reference_greedy(model, tokenizer(), prompt, 8).split("\nUser:")[0].split("\nSystem:")[0]
    assert r2.choices[0].message.content == expected


# ---- concurrency -----------------------------------------------------------------------------------


def test_32_parallel_requests_are_all_correct_and_not_mixed_up(client, model):
    prompts = [f"Story number {i}:" for i in range(32)]
    expected = [reference_greedy(model, tokenizer(), p, 8) for p in prompts]

    def ask(p):
        return client.completions.create(model=MODEL_NAME, prompt=p, max_tokens=8, temperature=0).choices[0].text

    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(ask, prompts))
    assert answers == expected
    assert len(set(expected)) > 1  # the check can tell prompts apart


def test_parallel_generation_threads_give_the_same_answers(model):
    app = create_app(model, tokenizer(), model_name=MODEL_NAME, max_concurrent=4, response_cache_size=0)
    prompts = [f"Parallel {i}" for i in range(12)]
    expected = [reference_greedy(model, tokenizer(), p, 6) for p in prompts]
    with BackgroundServer(app) as srv:
        c = openai.OpenAI(api_key="none", base_url=srv.url + "/v1", max_retries=0)
        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(lambda p: c.completions.create(
                model=MODEL_NAME, prompt=p, max_tokens=6, temperature=0).choices[0].text, prompts))
    assert answers == expected


# ---- limits -----------------------------------------------------------------------------------


def test_rate_limit_per_key_is_429_with_retry_after(model):
    app = create_app(model, tokenizer(), model_name=MODEL_NAME, api_key=["k1", "k2"],
                     rate_limit=0.5, rate_burst=2)
    with BackgroundServer(app) as srv:
        c1 = openai.OpenAI(api_key="k1", base_url=srv.url + "/v1", max_retries=0)
        c2 = openai.OpenAI(api_key="k2", base_url=srv.url + "/v1", max_retries=0)
        for _ in range(2):
            c1.completions.create(model=MODEL_NAME, prompt="x", max_tokens=1)
        with pytest.raises(openai.RateLimitError) as exc:
            c1.completions.create(model=MODEL_NAME, prompt="x", max_tokens=1)
        assert int(exc.value.response.headers["retry-after"]) >= 1
        assert exc.value.body["code"] == "rate_limit_exceeded"
        c2.completions.create(model=MODEL_NAME, prompt="x", max_tokens=1)  # another key: its own bucket


def test_queue_overflow_is_503_with_retry_after(model):
    slow = SlowModel(model, delay=0.05)
    app = create_app(slow, tokenizer(), model_name=MODEL_NAME, max_concurrent=1, max_queue=1,
                     response_cache_size=0)
    with BackgroundServer(app) as srv:
        body = {"model": MODEL_NAME, "prompt": "slow", "max_tokens": 10, "temperature": 0}
        with ThreadPoolExecutor(5) as pool:
            rs = list(pool.map(lambda _: httpx.post(srv.url + "/v1/completions", json=body, timeout=30), range(5)))
    codes = sorted(r.status_code for r in rs)
    assert codes.count(200) >= 2 and codes.count(503) >= 1, codes
    rejected = next(r for r in rs if r.status_code == 503)
    assert int(rejected.headers["retry-after"]) >= 1
    assert rejected.json()["error"]["code"] == "queue_full"
    assert len({r.json()["choices"][0]["text"] for r in rs if r.status_code == 200}) == 1


def test_client_disconnect_stops_generation(model):
    slow = SlowModel(model, delay=0.02)
    app = create_app(slow, tokenizer(), model_name=MODEL_NAME, response_cache_size=0)
    logger = logging.getLogger("llmnotes.serve")
    handler = LogLines()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with BackgroundServer(app) as srv:
            # Streaming: read two events, then hang up.
            body = {"model": MODEL_NAME, "prompt": "go", "max_tokens": 100, "temperature": 0.8, "stream": True}
            with httpx.stream("POST", srv.url + "/v1/completions", json=body, timeout=30) as r:
                for i, _ in enumerate(r.iter_lines()):
                    if i >= 2:
                        break
            # Not streaming: the client gives up after 0.3 s.
            body = {"model": MODEL_NAME, "prompt": "go", "max_tokens": 100, "temperature": 0.8}
            with pytest.raises(httpx.ReadTimeout):
                httpx.post(srv.url + "/v1/completions", json=body, timeout=0.3)
            deadline = time.monotonic() + 10
            while len([x for x in handler.lines if x["status"] == 499]) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            calls = slow.forward_calls
            time.sleep(0.3)
            assert slow.forward_calls == calls  # nothing is generating any more
            assert app.state.admission.active == 0
    finally:
        logger.removeHandler(handler)
    stopped = [x for x in handler.lines if x["status"] == 499]
    assert len(stopped) == 2
    # 100 tokens would take >= 2 s; both stopped long before.
    assert all(x["completion_tokens"] < 60 and x["finish_reason"] == "cancelled" for x in stopped), stopped


def test_a_client_that_leaves_the_queue_is_never_served(model):
    slow = SlowModel(model, delay=0.02)
    app = create_app(slow, tokenizer(), model_name=MODEL_NAME, response_cache_size=0)
    logger = logging.getLogger("llmnotes.serve")
    handler = LogLines()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with BackgroundServer(app) as srv, ThreadPoolExecutor(1) as pool:
            body = {"model": MODEL_NAME, "prompt": "first", "max_tokens": 40, "temperature": 0.5}
            first = pool.submit(httpx.post, srv.url + "/v1/completions", json=body, timeout=30)
            time.sleep(0.2)  # the first request holds the only slot
            with pytest.raises(httpx.ReadTimeout):  # the second waits in the queue, then gives up
                httpx.post(srv.url + "/v1/completions", json=body | {"prompt": "second"}, timeout=0.3)
            assert first.result().status_code == 200
            time.sleep(0.3)
    finally:
        logger.removeHandler(handler)
    left = [x for x in handler.lines if x["status"] == 499]
    assert len(left) == 1 and left[0]["completion_tokens"] == 0 and left[0]["finish_reason"] is None
    assert app.state.admission.active == 0 and app.state.admission.waiting == 0


def test_health_is_503_until_warm(model):
    app = create_app(model, tokenizer(), model_name=MODEL_NAME)
    from fastapi.testclient import TestClient

    assert TestClient(app).get("/health").status_code == 503  # no lifespan run: not warmed up
    with TestClient(app) as tc:  # runs the lifespan (warm-up)
        assert tc.get("/health").status_code == 200


def test_create_app_validates_its_options(model):
    with pytest.raises(TypeError, match="unknown option"):
        create_app(model, tokenizer(), model_name="m", max_concurent=2)
    with pytest.raises(ValueError, match="max_concurrent"):
        create_app(model, tokenizer(), model_name="m", max_concurrent=0)
    with pytest.raises(ValueError, match="rate_limit"):
        create_app(model, tokenizer(), model_name="m", rate_limit=-1)
    with pytest.raises(ValueError, match="api_key"):
        create_app(model, tokenizer(), model_name="m", api_key="")


def test_tokenizer_chat_template_wins(model):
    tok = tokenizer()

    class InstructTokenizer:  # an instruction-tuned model's tokenizer brings its own template
        eot_id = tok.eot_id
        chat_stop = ["<|end|>"]
        encode, decode = tok.encode, tok.decode

        def apply_chat_template(self, messages):
            return "".join(f"[{m['role']}] {m['content']}\n" for m in messages) + "[assistant] "

    app = create_app(model, InstructTokenizer(), model_name=MODEL_NAME)
    with BackgroundServer(app) as srv:
        c = openai.OpenAI(api_key="x", base_url=srv.url + "/v1", max_retries=0)
        r = c.chat.completions.create(model=MODEL_NAME, messages=[{"role": "user", "content": "hey"}],
                                      max_tokens=5, temperature=0)
    assert r.usage.prompt_tokens == len(tok.encode("[user] hey\n[assistant] "))


def test_request_timeout_stops_generation_with_504(model):
    slow = SlowModel(model, delay=0.05)
    app = create_app(slow, tokenizer(), model_name=MODEL_NAME, request_timeout=0.3, response_cache_size=0)
    with BackgroundServer(app) as srv:
        c = openai.OpenAI(api_key="x", base_url=srv.url + "/v1", max_retries=0)
        with pytest.raises(openai.APIStatusError) as exc:
            c.completions.create(model=MODEL_NAME, prompt="slow", max_tokens=100, temperature=0.5)
        assert exc.value.status_code == 504 and exc.value.body["code"] == "timeout"
        with pytest.raises(openai.APIError, match="request_timeout"):
            with c.completions.create(model=MODEL_NAME, prompt="slow", max_tokens=100, temperature=0.5,
                                      stream=True) as stream:
                list(stream)
        assert slow.forward_calls < 40  # stopped long before 100 tokens


def test_a_server_bug_is_a_500_in_openai_format(model):
    class Broken(SlowModel):
        fail = False

        def forward(self, idx, cache=None):
            if self.fail:
                raise RuntimeError("boom")
            return super().forward(idx, cache)

    broken = Broken(model, delay=0.0)
    with pytest.raises(TypeError, match="model must be"):
        create_app(object(), tokenizer(), model_name=MODEL_NAME)
    with pytest.raises(TypeError, match="tokenizer must"):
        create_app(model, object(), model_name=MODEL_NAME)
    app = create_app(broken, tokenizer(), model_name=MODEL_NAME)
    with BackgroundServer(app) as srv:
        broken.fail = True
        r = httpx.post(srv.url + "/v1/completions", json={"model": MODEL_NAME, "prompt": "x", "max_tokens": 2})
        assert r.status_code == 500 and r.json()["error"]["code"] == "server_error"
        broken.fail = False
        r = httpx.post(srv.url + "/v1/completions", json={"model": MODEL_NAME, "prompt": "x", "max_tokens": 2})
        assert r.status_code == 200  # the server survives and the slot was released
