"""The command-line workflows end to end, on a nano model trained in seconds.

Each chain is what Deployment -> index advertises: the directory one command writes is the
``--model`` the next command reads, through the one loader (``llmnotes.load_pretrained``).

    train -> sample
    train -> quantize --out -> sample / serve / export -> the gguf package's reader
    train -> finetune --lora -> serve
"""

from __future__ import annotations

import json

import pytest
import torch

from llmnotes.cli import main
from llmnotes.data import load_corpus

FAST = ["--preset", "nano", "--block-size", "256", "--batch-size", "2", "--warmup-steps", "1", "--eval-interval", "0",
        "--eval-steps", "1", "--log-interval", "1", "--no-progress", "--device", "cpu"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A nano model directory written by `llmnotes train` (with the shipped tokenizer)."""
    root = tmp_path_factory.mktemp("chain")
    text = root / "stories.txt"
    text.write_text(load_corpus("val")[:80_000], encoding="utf-8")
    assert main(["train", "--data", str(text), "--max-steps", "2", "--out", str(root / "model"), *FAST]) == 0
    return root / "model"


@pytest.fixture(scope="module")
def quantized(trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("q") / "int8"
    assert main(["quantize", "--model", str(trained), "--method", "int8", "--tokens", "300",
                 "--out", str(out), "--device", "cpu"]) == 0
    assert (out / "quantization.json").is_file() and not (out / "config.json").exists()
    return out


def _sample(model_dir, capsys) -> str:
    capsys.readouterr()
    assert main(["sample", "--model", str(model_dir), "--prompt", "Once upon a time", "--max-new-tokens", "8",
                 "--temperature", "0", "--device", "cpu"]) == 0
    return capsys.readouterr().out


def test_train_then_sample(trained, capsys):
    out = _sample(trained, capsys)
    assert out.startswith("Once upon a time") and len(out.strip()) > len("Once upon a time")


def test_quantize_then_sample_reads_the_quantized_directory(trained, quantized, capsys):
    from llmnotes import load_pretrained
    from llmnotes.quantize import QuantizedLinear

    model, tok = load_pretrained(quantized)
    assert isinstance(model.transformer.h[0].mlp.c_fc, QuantizedLinear)
    assert tok.vocab_size == load_pretrained(trained)[1].vocab_size
    assert _sample(quantized, capsys).startswith("Once upon a time")


def test_quantize_then_serve(quantized):
    from fastapi.testclient import TestClient

    from llmnotes.quantize import QuantizedLinear
    from llmnotes.serve import create_app, load_model

    model, tok, name = load_model(str(quantized), device="cpu")
    assert isinstance(model.transformer.h[0].attn.c_attn, QuantizedLinear) and name == quantized.name
    with TestClient(create_app(model, tok, model_name=name)) as client:
        r = client.post("/v1/completions", json={"model": name, "prompt": "Once", "max_tokens": 4,
                                                 "temperature": 0})
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["completion_tokens"] >= 1
    with pytest.raises(ValueError, match="already quantized"):
        load_model(str(quantized), device="cpu", quantize="int8")


def test_quantize_then_export_then_the_gguf_reader(trained, quantized, tmp_path):
    gguf = pytest.importorskip("gguf")
    path = tmp_path / "q.gguf"
    assert main(["export", "--model", str(quantized), "--out", str(path), "--qtype", "Q8_0", "--device", "cpu"]) == 0
    reader = gguf.GGUFReader(path)
    assert reader.fields["general.architecture"].contents() == "gpt2"
    names = {t.name for t in reader.tensors}
    assert "token_embd.weight" in names and "blk.0.attn_qkv.weight" in names
    config = json.loads((trained / "config.json").read_text(encoding="utf-8"))
    assert reader.fields["gpt2.block_count"].contents() == config["n_layer"]


def test_serve_quantizes_with_every_method(trained):
    from llmnotes.quantize import METHODS, QuantizedLinearBase
    from llmnotes.serve import load_model

    for method in METHODS:
        model, _, _ = load_model(str(trained), device="cpu", quantize=method)
        assert isinstance(model.transformer.h[0].mlp.c_fc, QuantizedLinearBase), method


def test_finetune_lora_then_serve(trained, tmp_path):
    from fastapi.testclient import TestClient

    from llmnotes.serve import create_app, load_model

    out = tmp_path / "ft"
    assert main(["finetune", "--task", "instruct", "--model", str(trained), "--out", str(out), "--max-steps", "1",
                 "--batch-size", "2", "--no-progress", "--eval-interval", "0", "--lora", "2"]) == 0
    adapter = next(p.parent for p in out.rglob("adapter_config.json"))
    model, tok, name = load_model(str(adapter), device="cpu")
    with TestClient(create_app(model, tok, model_name=name)) as client:
        r = client.post("/v1/chat/completions", json={"model": name, "max_tokens": 3, "temperature": 0,
                                                      "messages": [{"role": "user", "content": "Hi"}]})
    assert r.status_code == 200, r.text


def test_one_set_of_loader_errors(tmp_path, quantized):
    from llmnotes import GPT, load_pretrained
    from llmnotes.quantize import load_quantized

    (tmp_path / "notes.txt").write_text("x", encoding="utf-8")
    with pytest.raises(ValueError, match=r"holds no config.json, quantization.json or adapter_config.json "
                                         r"\(it holds notes.txt\); pass a shipped name \('tiny'"):
        load_pretrained(tmp_path)
    with pytest.raises(ValueError, match="is not a directory; pass a shipped name"):
        load_pretrained(tmp_path / "missing")
    with pytest.raises(ValueError, match="quantized model directory .* load it with llmnotes.load_pretrained"):
        GPT.from_pretrained(quantized)
    with pytest.raises(ValueError, match="quantized model, which keeps the dtypes"):
        load_pretrained(quantized, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="float model directory .* load it with llmnotes.load_pretrained"):
        load_quantized(load_pretrained.__globals__["SHIPPED"]["tiny"])
    model, _ = load_pretrained("tiny", dtype=torch.bfloat16)
    assert next(model.parameters()).dtype == torch.bfloat16
