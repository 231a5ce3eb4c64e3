"""LoRA adapters on disk in the PEFT layout: our loader and Hugging Face + peft agree."""

from __future__ import annotations

import json

import pytest
import torch

from llmnotes import GPT, GPTConfig, load_pretrained
from llmnotes.finetune.lora import apply_lora, load_adapter, lora_layers, read_adapter_config, save_adapter
from llmnotes.tokenizer import load_tokenizer


@pytest.fixture()
def adapted(tmp_path):
    """A small GPT saved as a model directory, and a trained-looking adapter saved beside it."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=2048, block_size=32, n_layer=2, n_head=2, n_embd=32)).eval()
    base = tmp_path / "base"
    model.save_pretrained(base)
    load_tokenizer().save(base)
    apply_lora(model, r=4, alpha=8)
    for _, layer in lora_layers(model):  # B starts at zero; give it values so the test can fail
        torch.nn.init.normal_(layer.lora_B.weight, std=0.05)
    save_adapter(model, tmp_path / "adapter", base_model=str(base))
    return model, base, tmp_path / "adapter"


def test_adapter_files_follow_peft(adapted):
    _, _, adapter = adapted
    config = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
    assert config["peft_type"] == "LORA" and config["r"] == 4 and config["lora_alpha"] == 8
    assert sorted(config["target_modules"]) == ["c_attn", "c_fc", "c_proj"]
    from safetensors.torch import load_file

    keys = load_file(str(adapter / "adapter_model.safetensors"))
    assert all(k.startswith("base_model.model.transformer.h.") for k in keys)
    assert any(k.endswith("attn.c_attn.lora_A.weight") for k in keys)


def test_load_pretrained_applies_the_adapter(adapted):
    model, _, adapter = adapted
    idx = torch.randint(0, 2048, (2, 16))
    with torch.no_grad():
        expected = model(idx)
        loaded, tok = load_pretrained(adapter)
        got = loaded(idx)
    assert not lora_layers(loaded)  # merged: plain linear layers
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert tok.vocab_size == 2048


def test_peft_reads_our_adapter_with_the_same_logits(adapted):
    """The oracle: transformers' GPT2LMHeadModel + peft's PeftModel on the same two directories."""
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    model, base, adapter = adapted
    hf = transformers.GPT2LMHeadModel.from_pretrained(base).eval()
    hf = peft.PeftModel.from_pretrained(hf, adapter).eval()
    idx = torch.randint(0, 2048, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(hf(idx).logits, model(idx), atol=1e-5, rtol=1e-5)


def test_adapter_errors_name_the_problem(adapted, tmp_path):
    _, base, adapter = adapted
    other = GPT(GPTConfig(vocab_size=2048, block_size=32, n_layer=3, n_head=2, n_embd=32))
    with pytest.raises(ValueError, match="does not fit this model"):
        load_adapter(other, adapter)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "adapter_config.json").write_text('{"peft_type": "PREFIX_TUNING"}', encoding="utf-8")
    with pytest.raises(ValueError, match="only LoRA adapters"):
        load_pretrained(bad)
    with pytest.raises(ValueError, match="no LoRA adapters to save"):
        save_adapter(GPT(GPTConfig(vocab_size=2048, block_size=32, n_layer=1, n_head=2, n_embd=32)),
                     tmp_path / "x", base_model="tiny")


def test_unknown_shipped_name_lists_the_shipped_models():
    with pytest.raises(ValueError, match="tiny-instruct"):
        load_pretrained("no-such-model")


def test_shipped_instruct_model_answers_held_out_questions():
    """tiny-instruct follows the Alpaca format and copies the found object from the input."""
    from llmnotes.finetune import evaluate_instructions, load_instructions

    model, tok = load_pretrained("tiny-instruct")
    rows = [r for r in load_instructions("test") if r["kind"] == "find"]
    assert evaluate_instructions(model, tok, rows)["score"] >= 0.8


def test_shipped_instruct_model_is_a_lora_adapter_on_tiny():
    """tiny-instruct ships as a PEFT adapter (a few hundred KB) that names tiny as its base;
    loading it equals applying the adapter to tiny by hand."""
    from llmnotes.pretrained import pretrained_dir

    path = pretrained_dir("tiny-instruct")
    config = read_adapter_config(path)
    assert config["base_model_name_or_path"] == "tiny" and config["r"] == 8
    assert not (path / "model.safetensors").exists() and (path / "adapter_model.safetensors").stat().st_size < 1_000_000
    shipped, tok = load_pretrained("tiny-instruct")
    by_hand = load_adapter(load_pretrained("tiny")[0], path)
    x = torch.tensor([tok.encode("Who is the story about?")])
    with torch.no_grad():
        torch.testing.assert_close(shipped(x), by_hand(x))
