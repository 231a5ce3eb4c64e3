"""``llmnotes serve`` as a user runs it: a subprocess serving a saved model directory."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # pytest-markdown-docs imports test files without it
from serve_fixtures import nano_model, reference_greedy, tokenizer  # noqa: E402

from llmnotes.cli import main  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_llmnotes_serve_subprocess(tmp_path):
    model, tok = nano_model(), tokenizer()
    model.save_pretrained(tmp_path / "nano-model")
    tok.save(tmp_path / "nano-model")
    port = free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "llmnotes", "serve", "--model", str(tmp_path / "nano-model"),
                             "--port", str(port), "--api-key", "secret"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "server did not become healthy"
            time.sleep(0.2)
        client = openai.OpenAI(api_key="secret", base_url=url + "/v1", max_retries=0)
        assert [m.id for m in client.models.list().data] == ["nano-model"]
        r = client.completions.create(model="nano-model", prompt="Once", max_tokens=8, temperature=0)
        assert r.choices[0].text == reference_greedy(model, tok, "Once", 8)
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(api_key="wrong", base_url=url + "/v1", max_retries=0).models.list()
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_llmnotes_serve_reports_bad_arguments(tmp_path, capsys):
    assert main(["serve", "--model", str(tmp_path / "missing")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert main(["serve", "--port", "0", "--model", str(tmp_path)]) == 2
    assert "--port" in capsys.readouterr().err


def test_int8_quantized_model_serves(tmp_path):
    from llmnotes.serve import BackgroundServer, create_app, load_model

    nano_model().save_pretrained(tmp_path)
    tokenizer().save(tmp_path)
    model, tok, name = load_model(str(tmp_path), device="cpu", quantize="int8")
    assert "Quantized" in type(model.transformer.h[0].mlp.c_fc).__name__
    with BackgroundServer(create_app(model, tok, model_name=name)) as srv:
        r = openai.OpenAI(api_key="x", base_url=srv.url + "/v1", max_retries=0).completions.create(
            model=name, prompt="Once", max_tokens=5, temperature=0)
    assert r.usage.completion_tokens >= 1
