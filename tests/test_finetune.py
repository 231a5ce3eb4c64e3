"""Finetuning tests: LoRA against peft, QLoRA on NF4, classification, instruction masking,
DPO against its formula, the shipped datasets, the Trainer integration and the CLI."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from llmnotes.finetune.dpo import (DPOLoss, PreferenceDataset, dpo_loss, pair_margins, preference_accuracy, preference_margin,
                          sequence_logprob, token_logprobs, token_logprobs_reference)
from llmnotes.finetune import (ClassificationDataset, FinetuneTrainer, GPTClassifier, accuracy,
                               classification_loss, confusion_matrix, freeze, predict)
from llmnotes.finetune.data import (CLASSIFY_LABELS, load_classification, load_instructions, load_preferences,
                                    read_jsonl, SCHEMAS)
from llmnotes.finetune.instruct import (IGNORE_INDEX, InstructionDataset, encode_example, format_alpaca, sft_loss_reference,
                               format_chat, format_prompt, score_response, sft_loss)
from llmnotes.finetune.lora import (LoRALinear, apply_lora, disable_lora, lora_layers, lora_state_dict, merge_lora,
                           trainable_parameters, unmerge_lora)
from llmnotes.model import GPT, GPTConfig, lm_loss
from llmnotes.quantize import NF4Linear, quantize_model
from llmnotes.tokenizer import load_tokenizer
from llmnotes.train import TrainConfig


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


def nano(preset="nano", seed=0, **kw):
    torch.manual_seed(seed)
    return GPT(GPTConfig.from_preset(preset, vocab_size=2048, block_size=256, **kw)).eval()


def randomize_lora(model, seed=1):
    """Give every B a non-zero value so the adapters actually change the function."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in lora_layers(model):
            layer.lora_B.weight.copy_(torch.randn(layer.lora_B.weight.shape, generator=g) * 0.05)


IDS = torch.randint(0, 2048, (2, 12), generator=torch.Generator().manual_seed(3))


# ---- LoRA --------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", ["nano", "llama-nano", "moe-tiny"])
def test_lora_starts_as_the_base_model_and_merges_exactly(preset):
    model = nano(preset) if preset != "moe-tiny" else GPT(GPTConfig.from_preset("moe-tiny", n_layer=1)).eval()
    ids = IDS % model.config.vocab_size
    before = model(ids)
    apply_lora(model, r=4, alpha=8)
    assert lora_layers(model), "no layer was adapted"
    torch.testing.assert_close(model(ids), before, rtol=0, atol=0)  # B = 0: exactly the base model
    randomize_lora(model)
    adapted = model(ids)
    assert (adapted - before).abs().max() > 1e-4
    with disable_lora(model):
        torch.testing.assert_close(model(ids), before)
    merged = merge_lora(copy.deepcopy(model))
    assert not lora_layers(merged) and not any(isinstance(m, LoRALinear) for m in merged.modules())
    torch.testing.assert_close(merged(ids), adapted, rtol=1e-5, atol=1e-5)


def test_lora_in_place_merge_unmerge_and_reference_path():
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(16, 24), r=4, alpha=12)
    nn.init.normal_(layer.lora_B.weight)
    x = torch.randn(3, 5, 16)
    y = layer(x)
    torch.testing.assert_close(layer.forward_reference(x), y, rtol=1e-5, atol=1e-5)
    w0 = layer.base.weight.clone()
    layer.merge()
    torch.testing.assert_close(layer(x), y, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer.base.weight, w0 + 3.0 * layer.lora_B.weight @ layer.lora_A.weight)
    unmerge_lora(layer)
    assert not layer.merged
    torch.testing.assert_close(layer.base.weight, w0, rtol=1e-6, atol=1e-6)
    assert layer.scaling == 3.0


def test_only_lora_parameters_get_gradients_and_counts():
    model = nano()
    apply_lora(model, r=2, alpha=4, target_modules=("c_attn",))
    randomize_lora(model)
    lm_loss(model(IDS), IDS).backward()
    for name, p in model.named_parameters():
        has_grad = p.grad is not None and p.grad.abs().sum() > 0
        assert has_grad == (".lora_" in name), name
    trainable, total = trainable_parameters(model)
    c = model.config.n_embd
    assert trainable == model.config.n_layer * 2 * (c + 3 * c)  # r * (in + out) per c_attn
    assert total == nano().num_params() + trainable
    assert set(lora_state_dict(model)) == {n for n, _ in model.named_parameters() if ".lora_" in n}


def test_lora_matches_peft():
    peft = pytest.importorskip("peft")

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(10, 7)

        def forward(self, x):
            return self.proj(x)

    torch.manual_seed(0)
    base = Net()
    ours = copy.deepcopy(base)
    ref = peft.get_peft_model(copy.deepcopy(base), peft.LoraConfig(r=3, lora_alpha=6, lora_dropout=0.0,
                                                                    target_modules=["proj"]))
    apply_lora(ours, r=3, alpha=6, target_modules=("proj",))
    peft_layer = ref.base_model.model.proj
    # the same A and a common non-zero B in both
    torch.manual_seed(1)
    b = torch.randn(7, 3)
    with torch.no_grad():
        peft_layer.lora_B["default"].weight.copy_(b)
        ours.proj.lora_B.weight.copy_(b)
        ours.proj.lora_A.weight.copy_(peft_layer.lora_A["default"].weight)
    assert peft_layer.scaling["default"] == ours.proj.scaling == 2.0
    x = torch.randn(4, 10)
    y_ours, y_ref = ours(x), ref(x)
    torch.testing.assert_close(y_ours, y_ref)
    (y_ours ** 2).sum().backward()
    (y_ref ** 2).sum().backward()
    torch.testing.assert_close(ours.proj.lora_A.weight.grad, peft_layer.lora_A["default"].weight.grad)
    torch.testing.assert_close(ours.proj.lora_B.weight.grad, peft_layer.lora_B["default"].weight.grad)
    # initialisation: peft's A is Kaiming-uniform(a=sqrt(5)) — bounded by 1/sqrt(in_features)
    fresh = LoRALinear(nn.Linear(10, 7), r=3)
    assert fresh.lora_A.weight.abs().max() <= 1 / math.sqrt(10) and fresh.lora_B.weight.abs().sum() == 0


def test_qlora_on_nf4_base():
    model = nano()
    quantize_model(model, "nf4")
    before = model(IDS)
    apply_lora(model, r=4, alpha=8)
    bases = [layer.base for _, layer in lora_layers(model)]
    assert bases and all(isinstance(b, NF4Linear) for b in bases)
    torch.testing.assert_close(model(IDS), before, rtol=0, atol=0)
    randomize_lora(model)
    out = model(IDS)
    lm_loss(out, IDS).backward()
    assert all(p.grad is None for n, p in model.named_parameters() if ".lora_" not in n)
    assert all(layer.lora_A.weight.grad is not None for _, layer in lora_layers(model))
    merged = merge_lora(copy.deepcopy(model))  # dequantize + add ΔW -> dense float layers
    torch.testing.assert_close(merged(IDS), out, rtol=1e-4, atol=1e-4)
    with pytest.raises(TypeError, match="cannot merge"):
        lora_layers(model)[0][1].merge()


def test_lora_bad_input():
    with pytest.raises(ValueError, match="r must be"):
        LoRALinear(nn.Linear(4, 4), r=0)
    with pytest.raises(ValueError, match="alpha"):
        LoRALinear(nn.Linear(4, 4), r=2, alpha=-1)
    with pytest.raises(ValueError, match="dropout"):
        LoRALinear(nn.Linear(4, 4), dropout=1.0)
    with pytest.raises(TypeError, match="linear layer"):
        LoRALinear(nn.ReLU())
    model = nano()
    with pytest.raises(ValueError, match="no layer matches"):
        apply_lora(model, target_modules=("q_proj",))
    apply_lora(model)
    with pytest.raises(ValueError, match="already has LoRA"):
        apply_lora(model)


# ---- classification ----------------------------------------------------------------------


def test_classifier_reads_last_real_token_under_padding():
    model = nano()
    clf = GPTClassifier(model, 3).eval()
    a, b = torch.tensor([[5, 6, 7, 8, 9]]), torch.tensor([[11, 12]])
    alone = torch.cat([clf(a), clf(b)])
    right = torch.tensor([[5, 6, 7, 8, 9], [11, 12, 0, 0, 0]])
    mask = (right != 0).long()
    torch.testing.assert_close(clf(right, mask), alone, rtol=1e-5, atol=1e-5)
    left = torch.tensor([[5, 6, 7, 8, 9], [0, 0, 0, 11, 12]])
    torch.testing.assert_close(clf(left, (left != 0).long()), alone, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="num_classes"):
        GPTClassifier(model, 1)


def test_freeze_policies():
    clf = GPTClassifier(nano(), 4)
    head = sum(p.numel() for p in clf.head.parameters())
    assert trainable_parameters(freeze(clf, "head_only"))[0] == head
    block = sum(p.numel() for p in clf.model.transformer.h[-1].parameters())
    ln_f = sum(p.numel() for p in clf.model.transformer.ln_f.parameters())
    assert trainable_parameters(freeze(clf, "last_blocks:1"))[0] == head + block + ln_f
    assert trainable_parameters(freeze(clf, "all"))[0] == trainable_parameters(clf)[1]
    for bad in ("some", "last_blocks:9", "last_blocks:x"):
        with pytest.raises(ValueError, match="policy"):
            freeze(clf, bad)


def test_accuracy_and_confusion_matrix_match_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    g = torch.Generator().manual_seed(0)
    pred, true = torch.randint(0, 4, (50,), generator=g), torch.randint(0, 4, (50,), generator=g)
    assert accuracy(pred, true) == pytest.approx(metrics.accuracy_score(true, pred))
    assert confusion_matrix(pred, true, 4).tolist() == metrics.confusion_matrix(true, pred, labels=range(4)).tolist()
    with pytest.raises(ValueError, match="labels must be in"):
        confusion_matrix(pred, true + 4, 4)
    with pytest.raises(ValueError, match="same shape|one shape"):
        accuracy(pred, true[:3])


def test_classification_trains_through_the_trainer(tok, tmp_path):
    rows = load_classification("train")[:64]
    clf = GPTClassifier(nano(), len(CLASSIFY_LABELS))
    data = ClassificationDataset(rows, tok)
    x, y = data[0]
    assert y[1] == len(tok.encode(rows[0]["text"])) and y[0] == rows[0]["label"]
    config = TrainConfig(max_steps=30, batch_size=16, lr=3e-3, warmup_steps=2, eval_interval=0, progress=False,
                         weight_decay=0.0)
    first = classification_loss(clf, data.x[:64], data.y[:64]).item()
    FinetuneTrainer(clf, data, None, config, loss_fn=classification_loss).fit()
    assert classification_loss(clf, data.x[:64], data.y[:64]).item() < first - 0.3
    assert predict(clf, data).shape == (64,)


# ---- instructions ------------------------------------------------------------------------


def test_prompt_formats():
    p = format_alpaca("Give the story a title.", "Tom found a key.")
    assert p.startswith("Below is an instruction that describes a task, paired with an input")
    assert p.endswith("### Instruction:\nGive the story a title.\n\n### Input:\nTom found a key.\n\n### Response:\n")
    assert "### Input" not in format_alpaca("Write a sentence about a cat.")
    from llmnotes.prompting import ChatTemplate

    msgs = [{"role": "user", "content": "Hi"}]
    assert format_chat(msgs) == ChatTemplate().render(msgs) == "User: Hi\n\nAssistant:"
    assert format_prompt("Q?", "ctx", style="chat") == "User: Q?\n\nctx\n\nAssistant:"
    with pytest.raises(ValueError, match="style"):
        format_prompt("Q?", style="llama")
    with pytest.raises(ValueError, match="instruction"):
        format_alpaca("  ")
    with pytest.raises(ValueError, match="messages\\[0\\]"):
        format_chat([{"role": "robot", "content": "x"}])


def test_loss_masking_covers_exactly_the_prompt(tok):
    prompt, response = format_alpaca("What did Tom find?", "Tom found a key."), "Tom found a key."
    x, y = encode_example(tok, prompt, response)
    n_prompt = len(tok.encode(prompt))
    assert (y[: n_prompt - 1] == IGNORE_INDEX).all() and (y[n_prompt - 1:] != IGNORE_INDEX).all()
    assert tok.decode(y[y != IGNORE_INDEX].tolist()) == response + "<|endoftext|>"
    assert tok.decode(x.tolist()) == prompt + response


def test_sft_loss_ignores_prompt_and_padding(tok):
    model = nano()
    rows = load_instructions("train")[:3]
    data = InstructionDataset(rows, tok)
    loss = sft_loss(model, data.x, data.y)
    # oracle: plain cross-entropy over the response tokens of each unpadded example
    total, count = 0.0, 0
    for r in rows:
        x, y = encode_example(tok, format_alpaca(r["instruction"], r["input"]), r["output"])
        keep = y != IGNORE_INDEX
        total += F.cross_entropy(model(x[None])[0][keep], y[keep], reduction="sum").item()
        count += int(keep.sum())
    assert loss.item() == pytest.approx(total / count, rel=1e-5)


def _instruction_batch(tok):
    data = InstructionDataset(load_instructions("train")[:6], tok, style="chat")
    return data.x, data.y


def _preference_batch(tok):
    data = PreferenceDataset(load_preferences("train")[:4], tok, style="chat")
    return data.x.flatten(0, 1), data.y.flatten(0, 1)  # (8, L): chosen and rejected rows


@pytest.mark.parametrize("lora", [False, True])
@pytest.mark.parametrize("fast, reference, batch", [(sft_loss, sft_loss_reference, _instruction_batch),
                                                    (token_logprobs, token_logprobs_reference, _preference_batch)])
def test_head_only_where_needed_matches_reference(tok, lora, fast, reference, batch):
    """sft_loss and token_logprobs (output head only at target positions) give the full-logits
    path's values and gradients, on a plain model and through LoRA adapters."""
    model = nano().train()
    if lora:
        apply_lora(model, r=4, alpha=8)
        randomize_lora(model)
    x, y = batch(tok)
    params = [p for p in model.parameters() if p.requires_grad]
    got, want = fast(model, x, y), reference(model, x, y)
    assert got.shape == want.shape == (() if fast is sft_loss else (len(x),))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
    for g_fast, g_ref in zip(torch.autograd.grad(got.sum(), params), torch.autograd.grad(want.sum(), params)):
        torch.testing.assert_close(g_fast, g_ref, rtol=1e-4, atol=1e-6)


def test_sft_loss_respects_a_changed_forward(tok):
    """A GPT subclass whose forward is not lm_head(hidden_states) gets the reference path."""
    class Scaled(GPT):
        def forward(self, idx, *args, **kwargs):
            return 2.0 * super().forward(idx, *args, **kwargs)

    torch.manual_seed(0)
    model = Scaled(GPTConfig.from_preset("nano", vocab_size=2048, block_size=256)).eval()
    data = InstructionDataset(load_instructions("train")[:3], tok)
    expected = lm_loss(model(data.x), data.y, ignore_index=IGNORE_INDEX)
    assert sft_loss(model, data.x, data.y).item() == pytest.approx(expected.item(), rel=1e-5)


def test_score_response_rubric():
    row = {"instruction": "Write a sentence about a happy dog.", "kind": "sentence", "output": "x"}
    assert score_response(row, "The happy dog ran in the park.") == 1.0
    assert score_response(row, "The dog ran.") == 0.0
    assert score_response(row, "happy dog. happy dog.") == 0.0
    assert score_response(row, "happy dog happy dog happy dog.") == 0.0
    qa = {"instruction": "What did Tom find?", "kind": "find", "output": "Tom found a key."}
    assert score_response(qa, " tom found a key ") == 1.0 and score_response(qa, "Tom found a cup.") == 0.0


# ---- DPO ---------------------------------------------------------------------------------


def test_dpo_loss_formula():
    t = lambda v: torch.tensor([v])  # noqa: E731
    # beta * ((-1 - -2) - (-3 - -2)) = 0.5 * 2 = 1  ->  -log sigmoid(1) = log(1 + e^-1)
    assert dpo_loss(t(-1.0), t(-3.0), t(-2.0), t(-2.0), beta=0.5).item() == pytest.approx(math.log(1 + math.exp(-1)))
    assert dpo_loss(t(-4.0), t(-4.0), t(-4.0), t(-4.0)).item() == pytest.approx(math.log(2))
    batch = dpo_loss(torch.tensor([0.0, -1.0]), torch.tensor([-2.0, 0.0]), torch.zeros(2), torch.zeros(2), beta=1.0)
    assert batch.item() == pytest.approx((-math.log(1 / (1 + math.exp(-2))) - math.log(1 / (1 + math.exp(1)))) / 2)
    with pytest.raises(ValueError, match="beta"):
        dpo_loss(t(0.0), t(0.0), t(0.0), t(0.0), beta=0)
    with pytest.raises(ValueError, match="one shape"):
        dpo_loss(torch.zeros(2), t(0.0), t(0.0), t(0.0))


def test_sequence_logprob_matches_full_forward():
    model = nano()
    prompt, completion = [3, 4, 5], [6, 7]
    logp = F.log_softmax(model(torch.tensor([prompt + completion]))[0], -1)
    expected = logp[2, 6] + logp[3, 7]
    assert sequence_logprob(model, prompt, completion).item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(ValueError, match="at least one token"):
        sequence_logprob(model, [], [1])


def test_dpo_with_lora_reference_raises_the_margin(tok):
    model = nano()
    apply_lora(model, r=4, alpha=8)
    data = PreferenceDataset(load_preferences("train")[:16], tok, style="chat")
    loss_fn = DPOLoss(beta=0.5)
    x, y = data.x[:4], data.y[:4]
    assert loss_fn(model, x, y).item() == pytest.approx(math.log(2), abs=1e-6)  # policy == reference
    before = preference_margin(model, data)
    config = TrainConfig(max_steps=15, batch_size=8, lr=1e-2, warmup_steps=1, eval_interval=0, progress=False,
                         weight_decay=0.0)
    FinetuneTrainer(model, data, None, config, loss_fn=loss_fn).fit()
    assert preference_margin(model, data) > before + 1.0
    with pytest.raises(ValueError, match="LoRA adapters"):
        DPOLoss()(nano(), x, y)


def test_preference_accuracy_counts_pairs_whose_chosen_answer_is_more_likely(tok):
    model = nano().eval()
    rows = load_preferences("train")[:6]
    data = PreferenceDataset(rows, tok, style="chat")
    by_hand = []
    for row in rows:  # score each pair with sequence_logprob, one completion at a time
        prompt = tok.encode(format_prompt(row["prompt"], row.get("input", ""), "chat"))
        chosen = sequence_logprob(model, prompt, tok.encode(" " + row["chosen"]) + [tok.eot_id]).item()
        rejected = sequence_logprob(model, prompt, tok.encode(" " + row["rejected"]) + [tok.eot_id]).item()
        by_hand.append(chosen - rejected)
    margins = pair_margins(model, data, batch_size=4)
    assert margins.tolist() == pytest.approx(by_hand, abs=1e-4)
    assert preference_accuracy(model, data) == pytest.approx(sum(m > 0 for m in by_hand) / len(rows))
    assert preference_margin(model, data) == pytest.approx(sum(by_hand) / len(rows), abs=1e-4)


# ---- datasets ----------------------------------------------------------------------------


def test_shipped_datasets():
    rows = load_classification()
    assert len(rows) == 400
    for split, n in (("train", 80), ("test", 20)):
        counts = torch.bincount(torch.tensor([r["label"] for r in rows if r["split"] == split]))
        assert counts.tolist() == [n] * 4
    inst = load_instructions()
    assert len(inst) >= 300 and {r["kind"] for r in inst} >= {"find", "where", "feel", "title", "sentence"}
    assert len(load_instructions("test")) == 60
    prefs = load_preferences()
    assert 50 <= len(prefs) <= 150 and all(r["chosen"] != r["rejected"] for r in prefs)


@pytest.mark.parametrize("line,message", [
    ('{"text": "A cat.", "label": 9}', "line 2: label 9 is out of range"),
    ('{"label": 1}', "line 2: missing field 'text'"),
    ('{"text": "  ", "label": 1}', "line 2: 'text' is empty"),
    ('{"text": "A cat.", "label": "sad"}', "line 2: 'label' must be an integer"),
    ('{"text": "A cat."', "line 2: not valid JSON"),
    ('{"text": "A cat.", "label": 1, "split": "dev"}', "line 2: split must be"),
])
def test_malformed_rows_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "A dog.", "label": 0}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="bad.jsonl, " + message):
        load_classification(path=path, num_classes=4)


def test_missing_instruction_output(tmp_path):
    path = tmp_path / "i.jsonl"
    path.write_text('{"instruction": "Say hi."}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="i.jsonl, line 1: missing field 'output'"):
        load_instructions(path=path)
    with pytest.raises(FileNotFoundError):
        read_jsonl(tmp_path / "none.jsonl", SCHEMAS["instruct"])


# ---- Trainer resume and the command line --------------------------------------------------


def test_lora_finetune_resumes_exactly(tok, tmp_path):
    rows = load_instructions("train")[:24]

    def run(out, resume=False, stop_after=None):
        model = nano()
        apply_lora(model, r=2, alpha=4)
        data = InstructionDataset(rows, tok, style="chat")
        config = TrainConfig(max_steps=4, batch_size=4, lr=1e-2, warmup_steps=1, eval_interval=0,
                             out_dir=str(out), resume=resume, progress=False)
        trainer = FinetuneTrainer(model, data, None, config, loss_fn=sft_loss)
        if stop_after:  # a run interrupted after its checkpoint at step 2
            for _ in range(stop_after):
                trainer.train_step()
            trainer.save_checkpoint()
        else:
            trainer.fit()
        return lora_state_dict(model)

    straight = run(tmp_path / "a")
    run(tmp_path / "b", stop_after=2)
    resumed = run(tmp_path / "b", resume=True)
    for k in straight:
        torch.testing.assert_close(resumed[k], straight[k], rtol=0, atol=0)


@pytest.mark.parametrize("task,extra", [("classify", ["--lora", "2"]), ("instruct", ["--style", "chat"]),
                                        ("dpo", ["--lora", "2", "--qlora"])])
def test_cli(tok, tmp_path, task, extra):
    from llmnotes.cli import main

    model_dir = tmp_path / "m"
    nano().save_pretrained(model_dir)
    tok.save(model_dir)
    out = tmp_path / "out"
    rc = main(["finetune", "--task", task, "--model", str(model_dir), "--out", str(out), "--max-steps", "2",
               "--batch-size", "4", "--no-progress", "--eval-interval", "0", *extra])
    assert rc == 0
    result = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert result["steps"] == 2 and result["after"]
    if task == "instruct":
        assert (out / "model" / "model.safetensors").is_file()
    assert main(["finetune", "--task", "dpo", "--qlora", "--model", str(model_dir), "--out", str(tmp_path / "x")]) == 2


def test_memory_breakdown_counts_bytes():
    from llmnotes.finetune.lora import memory_breakdown

    model = nano()
    n = model.num_params()
    assert memory_breakdown(model) == {"weights": 4 * n, "gradients": 4 * n, "optimizer": 8 * n, "total": 16 * n}
    apply_lora(model, r=4, alpha=8)
    trainable = trainable_parameters(model)[0]
    m = memory_breakdown(model)
    assert (m["gradients"], m["optimizer"]) == (4 * trainable, 8 * trainable)
    q = nano()
    quantize_model(q, "nf4")
    apply_lora(q, r=4, alpha=8)
    # each adapted fp32 weight (4 bytes per value) became 4-bit codes + one fp32 absmax per 64 values
    saved = sum(4 * n - (math.ceil(n / 64) * 32 + math.ceil(n / 64) * 4)
                for n in (layer.base.weight.numel() for _, layer in lora_layers(model)))
    assert memory_breakdown(q)["weights"] == m["weights"] - saved
    with torch.device("meta"):  # shapes only: GPT-2 small counted without allocating it
        big = GPT(GPTConfig.from_preset("gpt2"))
    assert memory_breakdown(big)["weights"] == 4 * 124_439_808


def test_the_three_finetuning_datasets_share_one_pair_dataset():
    from llmnotes.finetune.dpo import PreferenceDataset
    from llmnotes.finetune import ClassificationDataset, InstructionDataset
    from llmnotes.finetune.data import PairDataset

    assert all(issubclass(c, PairDataset) for c in (ClassificationDataset, InstructionDataset, PreferenceDataset))
    ds = PairDataset(torch.arange(6).view(3, 2), torch.arange(3))
    assert len(ds) == 3 and [t.tolist() for t in ds[1]] == [[2, 3], 1]
    with pytest.raises(ValueError, match="as many items, got 3 and 2"):
        PairDataset(torch.zeros(3, 2), torch.zeros(2))
