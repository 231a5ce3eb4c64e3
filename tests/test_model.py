"""The GPT against Hugging Face's GPT2LMHeadModel, its two attention paths, its cache, its errors."""

import json

import pytest
import torch

from llmnotes import GPT, GPTConfig
from llmnotes.model import lm_loss

transformers = pytest.importorskip("transformers")


def hf_tiny(seed=0, **kw):
    cfg = transformers.GPT2Config(vocab_size=101, n_positions=32, n_embd=48, n_layer=3, n_head=4,
                                  resid_pdrop=0, embd_pdrop=0, attn_pdrop=0, **kw)
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    # Random init leaves LayerNorms at identity and biases at 0: perturb them so they are tested.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    return model


def nano(**kw):
    torch.manual_seed(0)
    return GPT(GPTConfig.from_preset("nano", **kw)).eval()


def test_hf_to_llmnotes_logits_match(tmp_path):
    hf = hf_tiny()
    hf.save_pretrained(tmp_path)
    ours = GPT.from_pretrained(tmp_path)
    idx = torch.randint(0, 101, (2, 32))
    with torch.no_grad():
        diff = (ours(idx) - hf(idx).logits).abs().max().item()
    assert diff <= 1e-5


def test_llmnotes_to_hf_logits_match(tmp_path):
    ours = nano()
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ours.save_pretrained(tmp_path)
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    idx = torch.randint(0, 512, (3, 40))
    with torch.no_grad():
        diff = (ours(idx) - hf(idx).logits).abs().max().item()
    assert diff <= 1e-5
    # and back again, losslessly
    again = GPT.from_pretrained(tmp_path)
    for (k, a), (_, b) in zip(ours.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), k


def test_original_openai_key_layout_loads(tmp_path):
    """The original upload has no 'transformer.' prefix and carries attn.bias mask buffers."""
    from safetensors.torch import save_file

    hf = hf_tiny()
    hf.save_pretrained(tmp_path)
    from safetensors.torch import load_file

    state = load_file(str(tmp_path / "model.safetensors"))
    renamed = {k.removeprefix("transformer."): v for k, v in state.items() if k != "lm_head.weight"}
    renamed["h.0.attn.bias"] = torch.tril(torch.ones(1, 1, 32, 32))
    save_file(renamed, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    ours = GPT.from_pretrained(tmp_path)
    idx = torch.randint(0, 101, (1, 16))
    with torch.no_grad():
        assert (ours(idx) - hf(idx).logits).abs().max() <= 1e-5


def test_mismatched_tensor_is_named(tmp_path):
    hf = hf_tiny()
    hf.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text(encoding="utf-8"))
    cfg["n_embd"] = 64
    (tmp_path / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    with pytest.raises(ValueError, match=r"transformer\.\S+ has shape"):
        GPT.from_pretrained(tmp_path)


def test_missing_tensor_is_named(tmp_path):
    from safetensors.torch import load_file, save_file

    hf_tiny().save_pretrained(tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    del state["transformer.h.1.mlp.c_fc.bias"]
    save_file(state, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"h\.1\.mlp\.c_fc\.bias"):
        GPT.from_pretrained(tmp_path)


def test_pickle_checkpoint_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    hf_tiny().config.to_json_file(tmp_path / "config.json")
    torch.save({"x": Evil()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(ValueError, match="will not be unpickled"):
        GPT.from_pretrained(tmp_path)


def test_manual_and_sdpa_attention_agree():
    a = nano(attn_impl="manual")
    b = nano(attn_impl="sdpa")
    b.load_state_dict(a.state_dict())
    idx = torch.randint(0, 512, (2, 64))
    with torch.no_grad():
        torch.testing.assert_close(a(idx), b(idx), atol=1e-5, rtol=1e-5)


def test_attention_weights_are_causal_distributions():
    model = nano()
    logits, atts = model(torch.randint(0, 512, (1, 10)), output_attentions=True)
    assert len(atts) == 2 and atts[0].shape == (1, 2, 10, 10)
    torch.testing.assert_close(atts[0].sum(-1), torch.ones(1, 2, 10))
    assert torch.all(atts[0].triu(diagonal=1) == 0)


@pytest.mark.parametrize("impl", ["sdpa", "manual"])
@pytest.mark.parametrize("fixed", [False, True])
def test_kv_cache_matches_full_forward(impl, fixed):
    model = nano(attn_impl=impl)
    idx = torch.randint(0, 512, (2, 20))
    with torch.no_grad():
        full = model(idx)
        cache = model.make_cache(2, max_len=32, fixed_shape=fixed)
        step_logits = [model(idx[:, :5], cache=cache)]  # a prompt of 5, then one at a time
        for t in range(5, 20):
            step_logits.append(model(idx[:, t:t + 1], cache=cache))
    assert cache.seq_len == 20
    torch.testing.assert_close(torch.cat(step_logits, 1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("fixed", [False, True])
def test_cache_crop_and_reorder(fixed):
    model = nano()
    idx = torch.randint(0, 512, (2, 12))
    with torch.no_grad():
        cache = model.make_cache(2, fixed_shape=fixed)
        model(idx[:, :10], cache=cache)
        assert cache.seq_len == 10 and (not fixed or int(cache.position) == 10)
        cache.crop(8)
        last = model(idx[:, 8:9], cache=cache)[:, -1]
        torch.testing.assert_close(last, model(idx[:, :9])[:, -1], atol=1e-5, rtol=1e-5)
        cache.reorder(torch.tensor([1, 1]))
        nxt = model(idx[1:2, 9:10].expand(2, 1), cache=cache)[:, -1]
        torch.testing.assert_close(nxt[0], model(idx[1:2, :10])[0, -1], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="crop length"):
        cache.crop(100)


def test_left_padding_matches_unpadded():
    model = nano()
    a = torch.randint(0, 512, (1, 7))
    b = torch.randint(0, 512, (1, 4))
    pad = torch.zeros(1, 3, dtype=torch.long)
    batch = torch.cat([a, torch.cat([pad, b], 1)])
    mask = torch.tensor([[1] * 7, [0] * 3 + [1] * 4])
    with torch.no_grad():
        out = model(batch, attention_mask=mask)
        torch.testing.assert_close(out[0], model(a)[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out[1, 3:], model(b)[0], atol=1e-5, rtol=1e-5)
        # and incrementally with a cache, extending the mask by one column per step
        cache = model.make_cache(2)
        model(batch, attention_mask=mask, cache=cache)
        nxt = torch.tensor([[5], [9]])
        mask2 = torch.cat([mask, torch.ones(2, 1, dtype=torch.long)], 1)
        step = model(nxt, attention_mask=mask2, cache=cache)[:, -1]
        torch.testing.assert_close(step[1], model(torch.cat([b, nxt[1:]], 1))[0, -1], atol=1e-5, rtol=1e-5)


def test_padded_batch_matches_hf(tmp_path):
    hf = hf_tiny()
    hf.save_pretrained(tmp_path)
    ours = GPT.from_pretrained(tmp_path)
    idx = torch.randint(0, 101, (2, 9))
    mask = torch.tensor([[1] * 9, [0, 0, 0] + [1] * 6])
    # HF's forward numbers positions 0..T-1 unless told; its generate() passes cumsum(mask) - 1,
    # which is what llmnotes derives from the mask by itself.
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        expected = hf(idx, attention_mask=mask, position_ids=pos).logits
        got = ours(idx, attention_mask=mask)
    torch.testing.assert_close(got[mask.bool()], expected[mask.bool()], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name,count", [("gpt2", 124_439_808), ("gpt2-medium", 354_823_168),
                                        ("gpt2-large", 774_030_080), ("gpt2-xl", 1_557_611_200)])
def test_gpt2_parameter_counts(name, count):
    with torch.device("meta"):
        model = GPT(GPTConfig.from_preset(name))
    assert model.num_params() == count


@pytest.mark.parametrize("bad,err", [
    (dict(n_embd=30, n_head=4), "divisible by n_head"),
    (dict(n_layer=0), "n_layer must be a positive integer"),
    (dict(dropout=1.0), "dropout must be in"),
    (dict(attn_impl="flash"), "attn_impl"),
])
def test_config_validation(bad, err):
    with pytest.raises(ValueError, match=err):
        GPTConfig.from_preset("nano", **bad)


def test_config_has_one_name_per_value():
    from dataclasses import fields

    c = GPTConfig.from_preset("gpt2")
    assert (c.n_inner, c.n_kv_head, c.head_dim) == (3072, 12, 64)  # defaults filled in
    names = {f.name for f in fields(GPTConfig)} | {n for n in dir(GPTConfig) if not n.startswith("_")}
    assert not names & {"mlp_dim", "kv_heads", "head_size"}  # the old second names are gone
    # a default follows what it derives from; a value that was set stays
    wide = c.replace(n_embd=1024, n_head=16)
    assert (wide.n_inner, wide.n_kv_head, wide.head_dim) == (4096, 16, 64)
    gqa = GPTConfig.from_preset("llama-nano").replace(n_embd=64)
    assert (gqa.n_inner, gqa.n_kv_head, gqa.head_dim) == (64, 2, 16)
    # explicit defaults compare equal to filled-in ones, and a dict round trip is exact
    assert GPTConfig(n_inner=3072, n_kv_head=12, head_dim=64) == GPTConfig() == GPTConfig.from_dict(c.to_dict())
    # files written before the rename say head_size
    qwen = GPTConfig.from_preset("qwen3-0.6b").to_dict()
    qwen["head_size"] = qwen.pop("head_dim")
    assert GPTConfig.from_dict(qwen).head_dim == 128
    with pytest.raises(ValueError, match="n_kv_head must be a positive integer or None, got 0"):
        GPTConfig(n_kv_head=0)


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown preset 'gpt5'"):
        GPTConfig.from_preset("gpt5")


@pytest.mark.parametrize("idx,exc,msg", [
    (torch.zeros(65, dtype=torch.long)[None], ValueError, "exceeds the limit of 64"),
    (torch.tensor([[1, 512]]), ValueError, r"must be in \[0, 512\)"),
    (torch.tensor([[-1, 2]]), ValueError, r"must be in \[0, 512\)"),
    (torch.zeros(1, 3), TypeError, "integer token ids"),
    (torch.zeros(3, dtype=torch.long), ValueError, r"shape \(B, T\)"),
])
def test_bad_input(idx, exc, msg):
    with pytest.raises(exc, match=msg):
        nano()(idx)


def test_lm_loss_ignores_masked_targets():
    logits = torch.randn(2, 3, 5)
    targets = torch.tensor([[1, 2, -100], [0, -100, 4]])
    keep = targets != -100
    expected = torch.nn.functional.cross_entropy(logits[keep], targets[keep])
    torch.testing.assert_close(lm_loss(logits, targets), expected)


def test_backward_and_tied_head():
    model = nano()
    model.train()
    idx = torch.randint(0, 512, (2, 16))
    lm_loss(model(idx[:, :-1]), idx[:, 1:]).backward()
    assert model.lm_head.weight is model.transformer.wte.weight
    assert all(p.grad is not None for p in model.parameters())


def test_compiles():
    model = nano()
    compiled = torch.compile(model)
    idx = torch.randint(0, 512, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(compiled(idx), model(idx), atol=1e-5, rtol=1e-5)


def test_logits_to_keep_gives_the_last_positions_logits():
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_preset("nano")).eval()
    idx = torch.randint(0, 512, (2, 7))
    with torch.no_grad():
        full = model(idx)
        last = model(idx, logits_to_keep=1)
        three = model(idx, logits_to_keep=3)
    assert last.shape == (2, 1, 512) and three.shape == (2, 3, 512)
    torch.testing.assert_close(last, full[:, -1:], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(three, full[:, -3:], rtol=1e-5, atol=1e-5)
