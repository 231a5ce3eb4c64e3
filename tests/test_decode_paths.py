"""prepare_for_decode's measured choice of path (plain / column-major / split-K / oneDNN-packed /
native): each path gives the plain model's greedy tokens, the choice is cached per shape and
thread count, and a candidate must beat plain by a margin to be chosen."""

import time

import pytest
import torch
import torch.nn as nn

from llmnotes import GPT, GPTConfig, fast_linear
from llmnotes import native
from llmnotes.fast_linear import (PATHS, NativeLinear, PackedLinear, SplitKLinear, decode_plan, onednn_pack,
                                  pick_fastest, prepare_for_decode)
from llmnotes.sampling import generate



@pytest.fixture
def fresh_cache(monkeypatch):
    monkeypatch.setattr(fast_linear, "_CHOICES", {})


def tiny():
    torch.manual_seed(0)
    return GPT(GPTConfig.from_preset("tiny")).eval()


CLASS = {"plain": nn.Linear, "column-major": SplitKLinear, "split-K": SplitKLinear, "onednn-packed": PackedLinear,
         "native": NativeLinear}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("path", PATHS)
def test_every_path_gives_the_plain_tokens(two_threads, fresh_cache, monkeypatch, path, dtype):
    if path == "onednn-packed" and onednn_pack(torch.zeros(4, 4, dtype=dtype)) is None:
        pytest.skip("no oneDNN linear in this PyTorch build")
    if path == "native" and native.kernels() is None:
        pytest.skip(f"llmnotes.native unavailable: {native.unavailable()}")
    idx = torch.randint(0, 2048, (2, 6), generator=torch.Generator().manual_seed(0))
    plain = generate(tiny().to(dtype), idx, 24, temperature=0)
    plain_one = generate(tiny().to(dtype), idx[:1], 24, temperature=0)  # batch 1: the one-row kernels
    monkeypatch.setattr(fast_linear, "MIN_SPLIT_ELEMENTS", 0)  # measure even the tiny model's layers
    monkeypatch.setattr(fast_linear, "choose_path", lambda w, from_memory=True: (path, {}))
    # keep every layer on the forced path (the whole-step timing could move them all to native)
    monkeypatch.setattr(fast_linear, "_fuse_whole_model", lambda model: None)
    model = prepare_for_decode(tiny().to(dtype))
    kinds = {type(m) for m in model.modules() if isinstance(m, nn.Linear)}
    assert kinds == {CLASS[path]}
    assert torch.equal(generate(model, idx, 24, temperature=0), plain)
    assert torch.equal(generate(model, idx[:1], 24, temperature=0), plain_one)


def test_auto_measures_each_shape_once_and_reports_it(two_threads, fresh_cache, monkeypatch):
    monkeypatch.setattr(fast_linear, "MIN_SPLIT_ELEMENTS", 0)
    model = prepare_for_decode(tiny())
    plan = decode_plan(model)
    shapes = {tuple(m.weight.shape) for m in model.modules() if isinstance(m, nn.Linear)}
    assert {p["shape"] for p in plan} == shapes
    assert all(p["path"] in PATHS and {"plain", "column-major", "split-K"} <= set(p["ms"]) <= set(PATHS)
               for p in plan)
    assert sum(p["layers"] for p in plan) == sum(isinstance(m, nn.Linear) for m in model.modules())
    n = len(fast_linear._CHOICES)
    prepare_for_decode(tiny())
    assert len(fast_linear._CHOICES) == n  # cached: the second model measured nothing


def test_small_weights_stay_plain_without_measuring(fresh_cache):
    model = prepare_for_decode(nn.Sequential(nn.Linear(64, 32)))
    assert type(model[0]) is nn.Linear and model[0].weight.is_contiguous() and not fast_linear._CHOICES


def test_pick_fastest_keeps_the_baseline_unless_clearly_faster(fresh_cache):
    slow, fast = (lambda: time.sleep(0.004)), (lambda: time.sleep(0.001))
    assert pick_fastest(("a",), {"plain": slow, "other": fast}, "plain", rounds=3)[0] == "other"
    same = lambda: time.sleep(0.002)  # noqa: E731
    assert pick_fastest(("b",), {"plain": same, "other": same}, "plain", rounds=3, margin=0.5)[0] == "plain"
    assert pick_fastest(("a",), {"plain": fast, "other": slow}, "plain")[0] == "other"  # cached answer
    with pytest.raises(ValueError, match="baseline"):
        pick_fastest(("c",), {"x": fast}, "plain")


def test_split_layers_fall_back_when_the_thread_count_changes(two_threads, monkeypatch):
    calls = []
    monkeypatch.setattr(fast_linear, "split_k_linear", lambda *a: calls.append(1) or pytest.fail("split"))
    layer = prepare_for_decode(nn.Linear(1024, 512), path="split-K")
    assert layer.shards == 2
    torch.set_num_threads(1)
    with torch.no_grad():
        layer(torch.randn(1, 1024))
    assert not calls


def test_bad_path_is_rejected():
    with pytest.raises(ValueError, match="path must be"):
        prepare_for_decode(nn.Linear(4, 4), path="fastest")


def test_packed_layer_repacks_after_an_update_and_trains_with_f_linear(fresh_cache):
    if onednn_pack(torch.zeros(4, 4)) is None:
        pytest.skip("no oneDNN linear in this PyTorch build")
    torch.manual_seed(0)
    layer = prepare_for_decode(nn.Linear(64, 48), path="onednn-packed")
    x = torch.randn(2, 64)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), x @ layer.weight.T + layer.bias)
        layer.weight.mul_(2)  # e.g. an optimizer step
        torch.testing.assert_close(layer(x), x @ layer.weight.T + layer.bias)
    layer(x).sum().backward()  # gradients flow: the plain F.linear path
    assert layer.weight.grad is not None


def test_measured_as_the_model_runs_from_cache_or_from_memory(monkeypatch):
    """A model that fits in the last-level cache is measured on one weight in cache; a larger
    one on copies that overflow it (each product then reads its weight from memory)."""
    small = GPT(GPTConfig.from_preset("nano"))
    assert not fast_linear.reads_from_memory(small)
    monkeypatch.setattr(fast_linear, "cache_bytes", lambda: 1024)  # a 1 KiB "cache"
    assert fast_linear.reads_from_memory(small)
    w = torch.randn(64, 64)  # 16 KiB: 2 * 1 KiB / 16 KiB -> one copy suffices; 512 KiB "cache" -> 64 copies
    seen = []
    monkeypatch.setattr(fast_linear, "pick_fastest", lambda key, cands, baseline, per_call=1: seen.append(
        (key[-1], per_call)) or ("plain", {}))
    monkeypatch.setattr(fast_linear, "cache_bytes", lambda: 512 * 1024)
    fast_linear.choose_path(w, from_memory=True)
    fast_linear.choose_path(w, from_memory=False)
    assert seen == [(True, 64), (False, 1)]

