"""llmnotes.data: corpus, uint16 token files, sliding windows, loaders, and `llmnotes tokenize`."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from llmnotes.cli import main as cli_main
from llmnotes.data import (TokenDataset, corpus_path, get_batch, load_corpus, load_tokens, make_loader,
                           read_token_file, train_val_split, write_token_file)
from llmnotes.tokenizer import BPETokenizer, load_tokenizer

EOT = "<|endoftext|>"


# ------------------------------------------------------------------ corpus
def test_corpus_splits():
    train, val = load_corpus("train"), load_corpus("val")
    assert 1_000_000 < len(train.encode("utf-8")) < 2_000_000
    assert 0.03 < len(val) / (len(train) + len(val)) < 0.07  # ~95/5 split by story
    n_train, n_val = train.count(EOT), val.count(EOT)
    assert n_train > 1500 and n_val > 50
    stories = [s.strip() for s in train.split(EOT) if s.strip()]
    assert len(stories) == n_train and len(set(stories)) > 0.99 * len(stories)  # varied
    assert not set(stories) & {s.strip() for s in val.split(EOT) if s.strip()}  # split by story
    assert "{" not in train and "}" not in train  # no unfilled template slots
    with pytest.raises(ValueError, match="split must be 'train' or 'val'"):
        load_corpus("test")


def test_corpus_is_reproducible(tmp_path):
    """The generator re-creates the shipped files byte for byte."""
    script = corpus_path("train").parent / "generate.py"
    subprocess.run([sys.executable, str(script), "--out", str(tmp_path)], check=True,
                   capture_output=True)
    for split in ("train", "val"):
        assert (tmp_path / f"{split}.txt").read_bytes() == corpus_path(split).read_bytes()


def test_load_tokens_matches_tokenizer():
    ids = load_tokens("val")
    assert ids.dtype == np.uint16 and not ids.flags.writeable
    tok = load_tokenizer()
    assert ids.tolist() == tok.encode(load_corpus("val"), allowed_special="all")
    assert int((ids == tok.eot_id).sum()) == load_corpus("val").count(EOT)
    small = BPETokenizer.train(load_corpus("val"), 300, special_tokens=[EOT])
    assert load_tokens("val", small).max() < 300


# ------------------------------------------------------------------ token files
def test_token_file_roundtrip(tmp_path):
    ids = np.array([0, 1, 2047, 65535, 7], dtype=np.int64)
    path = write_token_file(tmp_path / "t.bin", ids)
    assert path.stat().st_size == 2 * len(ids)
    np.testing.assert_array_equal(np.fromfile(path, dtype="<u2"), ids)  # oracle: raw uint16
    mm = read_token_file(path)
    assert isinstance(mm, np.memmap) and mm.dtype == np.uint16
    np.testing.assert_array_equal(mm, ids)
    write_token_file(tmp_path / "l.bin", [3, 4])
    write_token_file(tmp_path / "t2.bin", torch.tensor([5, 6]))
    assert read_token_file(tmp_path / "t2.bin").tolist() == [5, 6]


def test_token_file_errors(tmp_path):
    with pytest.raises(ValueError, match="65536 does not fit in uint16"):
        write_token_file(tmp_path / "x.bin", [1, 65536])
    with pytest.raises(ValueError, match="-1 does not fit"):
        write_token_file(tmp_path / "x.bin", [-1, 3])
    assert not (tmp_path / "x.bin").exists()  # nothing half-written
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_token_file(tmp_path / "missing.bin")
    (tmp_path / "odd.bin").write_bytes(b"abc")
    with pytest.raises(ValueError, match="even number of bytes"):
        read_token_file(tmp_path / "odd.bin")


# ------------------------------------------------------------------ datasets
@pytest.mark.parametrize("n, block, stride", [(11, 4, None), (11, 4, 1), (12, 4, 3), (5, 4, 2), (100, 7, 5)])
def test_windows_are_shifted_pairs(n, block, stride):
    tokens = np.arange(n)
    ds = TokenDataset(tokens, block, stride)
    step = stride or block
    assert len(ds) == len(range(0, n - block, step))  # every start with room for the target
    for i in range(len(ds)):
        x, y = ds[i]
        assert x.dtype == torch.long and x.shape == (block,) and y.shape == (block,)
        assert x.tolist() == list(range(i * step, i * step + block))
        assert y.tolist() == [t + 1 for t in x.tolist()]
    assert ds[-1][0].tolist() == ds[len(ds) - 1][0].tolist()
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_dataset_accepts_lists_tensors_and_memmaps(tmp_path):
    ids = list(range(50))
    write_token_file(tmp_path / "a.bin", ids)
    for tokens in (ids, torch.tensor(ids), np.array(ids), read_token_file(tmp_path / "a.bin")):
        x, y = TokenDataset(tokens, 8)[2]
        assert x.tolist() == list(range(16, 24)) and y.tolist() == list(range(17, 25))


def test_dataset_errors():
    with pytest.raises(ValueError, match="needs at least 9"):
        TokenDataset(list(range(8)), 8)
    with pytest.raises(ValueError, match="block_size must be a positive int"):
        TokenDataset(list(range(8)), 0)
    with pytest.raises(ValueError, match="stride must be a positive int"):
        TokenDataset(list(range(80)), 8, stride=0)
    with pytest.raises(ValueError, match="one-dimensional"):
        TokenDataset(np.zeros((4, 20), dtype=np.int64), 3)


def test_train_val_split():
    tokens = np.arange(1000)
    tr, va = train_val_split(tokens, 0.1)
    assert len(tr) == 900 and len(va) == 100
    np.testing.assert_array_equal(np.concatenate([tr, va]), tokens)  # contiguous, no overlap
    with pytest.raises(ValueError, match=r"val_fraction must be in \(0, 1\)"):
        train_val_split(tokens, 1.0)


def test_make_loader_is_seeded_and_batched():
    ds = TokenDataset(np.arange(1000), 16)
    batches = lambda seed: [x for x, _ in make_loader(ds, 8, shuffle=True, seed=seed)]  # noqa: E731
    a, b, c = batches(0), batches(0), batches(1)
    assert len(a) == len(ds) // 8 and a[0].shape == (8, 16)
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert not all(torch.equal(p, q) for p, q in zip(a, c))
    x, y = next(iter(make_loader(ds, 4, shuffle=False)))
    assert torch.equal(x[:, 1:], y[:, :-1]) and x[0, 0].item() == 0
    assert len(list(make_loader(ds, 5, drop_last=False))) == -(-len(ds) // 5)
    with pytest.raises(ValueError, match="fewer than batch_size"):
        make_loader(TokenDataset(np.arange(40), 16), 8)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        make_loader(ds, 0)


def test_get_batch():
    tokens = np.arange(500, dtype=np.uint16)
    g = torch.Generator().manual_seed(0)
    x, y = get_batch(tokens, 4, 32, generator=g)
    assert x.shape == (4, 32) and x.dtype == torch.long
    assert torch.equal(y, x + 1)
    x2, _ = get_batch(tokens, 4, 32, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, x2)
    with pytest.raises(ValueError, match="needs at least 501"):
        get_batch(tokens, 1, 500)


# ------------------------------------------------------------------ command line
def test_cli_train_tokenizer_then_encode(tmp_path, capsys):
    src = tmp_path / "in.txt"
    src.write_text(load_corpus("val")[:20_000], encoding="utf-8")
    assert cli_main(["tokenize", "--train-tokenizer", "--vocab-size", "320", "--data", str(src),
                     "--out", str(tmp_path / "tok")]) == 0
    tok = BPETokenizer.from_pretrained(tmp_path / "tok")
    assert tok.vocab_size == 320 and tok.eot_id == 319
    assert cli_main(["tokenize", "--tokenizer", str(tmp_path / "tok"), "--data", str(src),
                     "--out", str(tmp_path / "ids.bin")]) == 0
    ids = read_token_file(tmp_path / "ids.bin")
    assert ids.tolist() == tok.encode(src.read_text(encoding="utf-8"), allowed_special="all")
    assert "bytes/token" in capsys.readouterr().out


def test_cli_default_tokenizer_and_errors(tmp_path, capsys):
    src = tmp_path / "in.txt"
    src.write_text("Lily had a red ball.", encoding="utf-8")
    assert cli_main(["tokenize", "--data", str(src), "--out", str(tmp_path / "a.bin")]) == 0
    assert read_token_file(tmp_path / "a.bin").tolist() == load_tokenizer().encode("Lily had a red ball.")
    assert cli_main(["tokenize", "--data", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "b.bin")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli_main(["tokenize", "--train-tokenizer", "--vocab-size", "10", "--data", str(src),
                     "--out", str(tmp_path / "t")]) == 2
    assert "vocab_size must be" in capsys.readouterr().err


def test_cli_as_module(tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("Tom saw a big dog.", encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "llmnotes", "tokenize", "--input", str(src),
                          "--out", str(tmp_path / "a.bin")], capture_output=True, text=True, check=True)
    assert "tokens" in out.stdout
    assert read_token_file(tmp_path / "a.bin").tolist() == load_tokenizer().encode("Tom saw a big dog.")


def _load_corpus_script(name):
    import importlib.util

    folder = corpus_path("train").parent
    sys.path.insert(0, str(folder))
    try:
        spec = importlib.util.spec_from_file_location(f"_corpus_{name}", folder / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(folder))


def test_mix_is_reproducible_and_has_every_kind(tmp_path):
    """The pretraining mix: same seed, same bytes; every record kind present in the counts."""
    script = corpus_path("train").parent / "generate.py"
    for out in (tmp_path / "a", tmp_path / "b"):
        subprocess.run([sys.executable, str(script), "--mix", "--n-stories", "200", "--out", str(out)],
                       check=True, capture_output=True)
    assert (tmp_path / "a" / "train.txt").read_bytes() == (tmp_path / "b" / "train.txt").read_bytes()
    counts = json.loads((tmp_path / "a" / "counts.json").read_text(encoding="utf-8"))
    assert set(counts) == {"story", "words", "qa", "fewshot"}
    assert counts["story"] + counts["words"] == 200
    text = (tmp_path / "a" / "train.txt").read_text(encoding="utf-8") + \
        (tmp_path / "a" / "val.txt").read_text(encoding="utf-8")
    assert text.count(EOT) == sum(counts.values())
    assert "{" not in text and "}" not in text


def test_qa_answers_are_copied_from_the_story():
    """Every word of every Answer of a qa record is in its story (answers are spans, except that
    "a little kite" is answered "a kite"): the skill is copying, not recall."""
    import random

    records = _load_corpus_script("records")
    rng = random.Random(0)
    for _ in range(300):
        story, _, qa = records.qa_record(rng).partition("\n\n")
        answers = [ln[len("Answer: "):] for ln in qa.splitlines() if ln.startswith("Answer: ")]
        words = set(story.lower().replace(".", " ").replace(",", " ").split())
        assert answers and all(set(a.lower().split()) <= words for a in answers), (story, qa)


def test_fewshot_labels_are_consistent_within_a_record():
    """In a few-shot record one class always gets one label word, and arbitrary labels vary
    between records (so only the examples can tell a label)."""
    import random

    records = _load_corpus_script("records")
    rng = random.Random(1)
    mappings = set()
    for _ in range(200):
        rows = [r.split("\n") for r in records.fewshot_record(rng).split("\n\n")]
        assert len(rows) >= 3 and all(len(r) == 2 for r in rows)
        if rows[0][0].startswith("Word: ") and rows[0][1].startswith("Label: "):
            seen = {}
            for word, label in rows:
                cls = next(c for c, ws in records.ANIMAL_TASK.items() if word[6:] in ws)
                assert seen.setdefault(cls, label) == label
            mappings.add(tuple(sorted(seen.items())))
    assert len(mappings) > 10


def test_lookup_records_repeat_items_under_one_arbitrary_mapping():
    """A lookup list draws from a small pool, so items come back (their label can be copied),
    one label per class within a list, and the mapping changes between lists."""
    import random

    records = _load_corpus_script("records")
    rng = random.Random(2)
    repeats, mappings = 0, set()
    for _ in range(200):
        rows = [r.split("\n") for r in records.lookup_record(rng).split("\n\n")]
        assert 5 <= len(rows) <= 12 and all(len(r) == 2 and r[1].startswith("Label: ") for r in rows)
        items = [item for item, _ in rows]
        repeats += len(items) > len(set(items))
        labels = {}
        for item, label in rows:
            assert labels.setdefault(item, label) == label  # one item, one label
            assert label[len("Label: "):] in records.ARBITRARY_LABELS
        mappings.add(tuple(sorted(labels.items())))
    assert repeats > 150 and len(mappings) == 200


def test_lookup_flag_adds_lookup_records(tmp_path):
    script = corpus_path("train").parent / "generate.py"
    subprocess.run([sys.executable, str(script), "--mix", "--n-stories", "100", "--lookup", "0.5", "--out", str(tmp_path)],
                   check=True, capture_output=True)
    counts = json.loads((tmp_path / "counts.json").read_text(encoding="utf-8"))
    assert counts["lookup"] == 50 and counts["story"] + counts["words"] == 100
    assert "\nLabel: " in (tmp_path / "train.txt").read_text(encoding="utf-8")


def test_tokenize_says_data_like_train_and_keeps_input_as_a_hidden_alias(tmp_path, capsys):
    from llmnotes.cli import main as cli_main

    src = tmp_path / "a.txt"
    src.write_text("hello world " * 20, encoding="utf-8")
    assert cli_main(["tokenize", "--input", str(src), "--out", str(tmp_path / "a.bin")]) == 0
    assert cli_main(["tokenize", "--out", str(tmp_path / "b.bin")]) == 2
    assert "--data is required" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["tokenize", "--help"])
    help_text = capsys.readouterr().out
    assert "--data" in help_text and "--input" not in help_text
