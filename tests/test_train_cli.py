"""`llmnotes train` end to end, and the shipped model from `load_pretrained`."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch

from llmnotes.train import checkpoint as ckpt
from llmnotes.cli import main
from llmnotes.model import GPT


def _bin(path, n=6000, vocab=512):
    base = np.random.default_rng(0).integers(0, vocab, 97)
    np.resize(base, n).astype(np.uint16).tofile(path)
    return path


FAST = ["--preset", "nano", "--batch-size", "4", "--warmup-steps", "1", "--eval-interval", "3",
        "--eval-steps", "1", "--log-interval", "1", "--no-progress", "--device", "cpu"]


def test_train_bin_file_writes_a_loadable_model_dir(tmp_path, capsys):
    data, out = _bin(tmp_path / "toks.bin"), tmp_path / "run"
    assert main(["train", "--data", str(data), "--max-steps", "3", "--out", str(out), *FAST]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 3 and summary["tokens_seen"] == 3 * 4 * 64
    model = GPT.from_pretrained(out)
    weights, _ = ckpt.load(ckpt.latest_checkpoint(out))
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, weights[k], rtol=0, atol=0)  # the exported weights are the trained ones
    full = json.loads((out / "train_summary.json").read_text(encoding="utf-8"))
    assert full["model_config"]["n_layer"] == 2 and full["val_loss"] == summary["val_loss"]
    # --resume continues the same run to a larger step count
    assert main(["train", "--data", str(data), "--max-steps", "5", "--out", str(out), "--resume", *FAST]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["steps"] == 5
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
             if "loss" in json.loads(x)]
    assert steps == [1, 2, 3, 4, 5]


def test_train_text_with_the_shipped_tokenizer_and_fp16_export(tmp_path, capsys):
    from llmnotes.data import load_corpus
    from llmnotes.tokenizer import BPETokenizer

    (tmp_path / "train.txt").write_text(load_corpus("val")[:20_000], encoding="utf-8")
    (tmp_path / "val.txt").write_text(load_corpus("val")[-5_000:], encoding="utf-8")
    out = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path), "--max-steps", "2", "--out", str(out),
                 "--save-dtype", "fp16", *FAST]) == 0
    from safetensors import safe_open

    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    model = GPT.from_pretrained(out)
    assert model.config.vocab_size == 2048  # the tokenizer's, not nano's 512
    from llmnotes.tokenizer import load_tokenizer

    text = load_corpus("val")[:2000]
    assert BPETokenizer.from_pretrained(out).encode(text, allowed_special="all") == \
        load_tokenizer().encode(text, allowed_special="all")
    assert (out / "data" / "train.bin").is_file()  # the tokenized text is cached


def test_train_cli_errors(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "o"), *FAST]) == 2
    assert "does not exist" in capsys.readouterr().err
    data = _bin(tmp_path / "toks.bin", vocab=600)  # ids beyond nano's 512
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "o"), *FAST]) == 2
    assert "outside the model's vocabulary" in capsys.readouterr().err
    small = _bin(tmp_path / "small.bin", n=100)
    assert main(["train", "--data", str(small), "--out", str(tmp_path / "o2"), *FAST]) == 2
    assert "error" in capsys.readouterr().err


# ---- the shipped model --------------------------------------------------------------------


def test_load_pretrained_tiny():
    from llmnotes import load_pretrained

    model, tok = load_pretrained("tiny")
    c = model.config
    assert (c.vocab_size, c.block_size, c.n_layer, c.n_head, c.n_embd) == (2048, 256, 4, 4, 192)
    assert tok.vocab_size == 2048 and not model.training
    assert all(p.dtype == torch.float32 for p in model.parameters())  # stored fp16, loaded fp32
    assert model.num_params() == 2_222_208


def test_load_pretrained_errors(tmp_path):
    from llmnotes import load_pretrained

    with pytest.raises(ValueError, match="unknown pretrained model 'huge'"):
        load_pretrained("huge")
    with pytest.raises(ValueError, match="no config.json"):
        load_pretrained(tmp_path)
    with pytest.raises(TypeError, match="name must be"):
        load_pretrained(3)


def test_load_pretrained_accepts_a_directory(tmp_path):
    from llmnotes import load_pretrained
    from llmnotes.pretrained import pretrained_dir

    model, tok = load_pretrained(pretrained_dir("tiny"))
    assert model.config.n_embd == 192 and tok.vocab_size == 2048


def test_shipped_model_beats_the_unigram_baseline_and_writes_corpus_words():
    from llmnotes import load_pretrained
    from llmnotes.data import load_corpus, load_tokens

    model, tok = load_pretrained("tiny")
    train, val = load_tokens("train"), load_tokens("val")
    p = (np.bincount(train, minlength=2048) + 1) / (len(train) + 2048)
    unigram = float(-np.log(p[val]).mean())
    ids = torch.as_tensor(val[: 8 * 256 + 1].astype(np.int64))
    x, y = ids[:-1].view(8, 256), ids[1:].view(8, 256)
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten()).item()
    assert loss < unigram - 2.0, (loss, unigram)  # uses context, a lot
    assert math.exp(loss) < 20

    # sampled text is made of the corpus's words
    torch.manual_seed(0)
    idx = torch.tensor([tok.encode("Once upon a time")])
    cache = model.make_cache(1)
    with torch.no_grad():
        logits = model(idx, cache=cache)
        for _ in range(80):
            nxt = torch.multinomial(torch.softmax(logits[:, -1] / 0.8, dim=-1), 1)
            idx = torch.cat([idx, nxt], dim=1)
            logits = model(nxt, cache=cache)
    words = re.findall(r"[A-Za-z]+", tok.decode(idx[0].tolist()))
    vocab = set(re.findall(r"[A-Za-z]+", load_corpus("train")))
    assert len(words) > 30
    assert sum(w in vocab for w in words) / len(words) > 0.95
