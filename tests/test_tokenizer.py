"""BPETokenizer against Hugging Face tokenizers/transformers (the oracles) and itself (fast vs reference)."""

from __future__ import annotations

import json
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmnotes.data import load_corpus
from llmnotes.tokenizer import (GPT2_SPLIT_PATTERN, BPETokenizer, bytes_to_unicode, get_pair_counts,
                                load_tokenizer, merge)

EOT = "<|endoftext|>"
SAMPLES = {
    "english": "Once upon a time, a little girl named Lily found a shiny key. She's happy; they'll see!",
    "code": "def f(x: int) -> int:\n    return x ** 2  # square\n\nprint(f(3))\n",
    "whitespace": "a  b   c\t\td \n\n\n  e   \r\n    \tf      ",
    "emoji": "I love 🐶 and 🍕!! 👩‍👩‍👧‍👦 🏳️‍🌈",
    "cjk": "你好，世界。東京は晴れです。안녕하세요",
    "numbers": "In 2024 there were 1,234,567 people; pi is 3.14159 and 00042 is padded.",
    "mixed": "Ünïcödé café — naïve résumé «quotes» 'single' \"double\" ½ ∑ x²; ALLCAPS MiXeD",
    "contractions": "I'm sure you've seen it; we'd go, they're here, it's 'quoted' 'S 'T",
}


@pytest.fixture(scope="module")
def shipped() -> BPETokenizer:
    return load_tokenizer()


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    """A byte-level BPE trained by Hugging Face tokenizers on a slice of the corpus."""
    from tokenizers import ByteLevelBPETokenizer

    text = load_corpus("train")[:300_000]
    hf = ByteLevelBPETokenizer()  # GPT-2 regex pre-tokenizer, add_prefix_space=False
    hf.train_from_iterator(text.split(EOT), vocab_size=700, min_frequency=2,
                           special_tokens=[EOT], show_progress=False)
    d = tmp_path_factory.mktemp("hf_bpe")
    hf.save_model(str(d))
    return d


# ------------------------------------------------------------------ building blocks
def test_bytes_to_unicode_matches_gpt2():
    m = bytes_to_unicode()
    assert len(set(m.values())) == 256
    assert m[ord(" ")] == "Ġ" and m[ord("\n")] == "Ċ" and m[ord("A")] == "A"
    from transformers.convert_slow_tokenizer import bytes_to_unicode as hf_b2u

    assert m == hf_b2u()


def test_pair_counts_and_merge():
    assert get_pair_counts([1, 2, 3, 1, 2]) == {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    assert merge([1, 2, 3, 1, 2], (1, 2), 4) == [4, 3, 4]
    assert merge([1, 1, 1], (1, 1), 9) == [9, 1]  # left to right, no overlap


def _naive_train(text: str, num_merges: int) -> list[tuple[bytes, bytes]]:
    """Oracle: recount every pair from scratch before each merge (minbpe's RegexTokenizer)."""
    import regex

    chunks = [list(c.encode("utf-8")) for c in regex.findall(GPT2_SPLIT_PATTERN, text)]
    vocab = {i: bytes([i]) for i in range(256)}
    merges = []
    for k in range(num_merges):
        counts: dict = {}
        for c in chunks:
            get_pair_counts(c, counts)
        if not counts:
            break
        best = max(counts.items(), key=lambda kv: (kv[1], -kv[0][0], -kv[0][1]))[0]
        new = 256 + k
        chunks = [merge(c, best, new) for c in chunks]
        vocab[new] = vocab[best[0]] + vocab[best[1]]
        merges.append((vocab[best[0]], vocab[best[1]]))
    return merges


def test_incremental_training_equals_naive_recount():
    text = load_corpus("val")[:12_000].replace(EOT, "")
    fast = BPETokenizer.train(text, 256 + 80)
    assert fast.merges == _naive_train(text, 80)


def test_training_is_deterministic_and_sized():
    text = load_corpus("val")
    a = BPETokenizer.train(text, 600, special_tokens=[EOT])
    b = BPETokenizer.train(text, 600, special_tokens=[EOT])
    assert a.merges == b.merges
    assert a.vocab_size == 600 and a.eot_id == 599 and len(a.merges) == 600 - 256 - 1
    # no merge crosses the special token's text
    assert not any(b"<|" in x + y or b"|>" in x + y for x, y in a.merges)


def test_training_stops_early_with_a_warning():
    with pytest.warns(UserWarning, match="only enough pairs"):
        tok = BPETokenizer.train("ab ab ab", 1000)
    assert tok.vocab_size < 1000
    assert tok.decode(tok.encode("ab ab ab")) == "ab ab ab"


def test_train_verbose_prints(capsys):
    BPETokenizer.train("hello hello hello world", 260, verbose=True)
    assert "merge 1/4" in capsys.readouterr().out


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(text="abc", vocab_size=100), ValueError, "vocab_size must be"),
    (dict(text="abc", vocab_size=256, special_tokens=[EOT]), ValueError, "257"),
    (dict(text=b"abc", vocab_size=300), TypeError, "text must be a str"),
    (dict(text="abc", vocab_size=300, special_tokens=[""]), ValueError, "special_tokens"),
])
def test_train_rejects_bad_input(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        BPETokenizer.train(**kwargs)


# ------------------------------------------------------------------ parity with Hugging Face
@pytest.mark.parametrize("name", sorted(SAMPLES))
@pytest.mark.parametrize("fast", [None, False])
def test_hf_trained_files_encode_identically(hf_dir, name, fast):
    from tokenizers import ByteLevelBPETokenizer

    hf = ByteLevelBPETokenizer(str(hf_dir / "vocab.json"), str(hf_dir / "merges.txt"))
    ours = BPETokenizer.from_pretrained(hf_dir)
    text = SAMPLES[name]
    assert ours.encode(text, fast=fast) == hf.encode(text).ids
    assert ours.decode(hf.encode(text).ids) == text


def test_hf_trained_files_corpus_and_special_tokens(hf_dir):
    from tokenizers import ByteLevelBPETokenizer

    hf = ByteLevelBPETokenizer(str(hf_dir / "vocab.json"), str(hf_dir / "merges.txt"))
    hf.add_special_tokens([EOT])
    ours = BPETokenizer.from_pretrained(hf_dir)
    assert ours.special_tokens == {EOT: hf.token_to_id(EOT)}
    assert not ours.has_fast_path or ours._fast[1] is not None  # HF ids differ from ranks: mapped
    text = load_corpus("val")[:30_000]
    expected = hf.encode(text).ids
    assert ours.encode(text, allowed_special="all") == expected
    assert ours.encode(text, allowed_special="all", fast=False) == expected


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_shipped_files_agree_with_transformers(shipped, name):
    from transformers import GPT2TokenizerFast

    hf = GPT2TokenizerFast.from_pretrained(str(_shipped_path()))
    text = SAMPLES[name] + EOT + SAMPLES[name]
    assert shipped.encode(text, allowed_special="all") == hf.encode(text)
    assert shipped.decode(shipped.encode(text, allowed_special="all")) == hf.decode(hf.encode(text))


def test_shipped_tokenizer_on_val_corpus_agrees_with_tokenizers(shipped):
    from tokenizers import ByteLevelBPETokenizer

    d = _shipped_path()
    hf = ByteLevelBPETokenizer(str(d / "vocab.json"), str(d / "merges.txt"))
    hf.add_special_tokens([EOT])
    text = load_corpus("val")
    assert shipped.encode(text, allowed_special="all") == hf.encode(text).ids


def _shipped_path():
    from llmnotes.tokenizer import _shipped_dir

    return _shipped_dir()


def test_shipped_tokenizer_facts(shipped):
    assert shipped.vocab_size == 2048 and len(shipped) == 2048
    assert shipped.eot_id == 2047 and shipped.special_tokens == {EOT: 2047}
    assert len(shipped.merges) == 2048 - 256 - 1
    # The shipped files are exactly what training on train.txt produces (reproducible asset).
    retrained = BPETokenizer.train(load_corpus("train"), 2048, special_tokens=[EOT])
    assert retrained.merges == shipped.merges


# ------------------------------------------------------------------ fast path vs reference
def test_fast_path_equals_reference_on_corpus(shipped):
    if not shipped.has_fast_path:
        pytest.skip("tiktoken is not installed")
    text = load_corpus("val")
    assert shipped.encode(text, allowed_special="all") == shipped.encode(text, allowed_special="all",
                                                                          fast=False)


def test_falls_back_silently_without_tiktoken(monkeypatch):
    monkeypatch.setitem(sys.modules, "tiktoken", None)  # makes `import tiktoken` raise ImportError
    tok = BPETokenizer.from_pretrained(_shipped_path())
    assert not tok.has_fast_path
    assert tok.encode(SAMPLES["english"]) == load_tokenizer().encode(SAMPLES["english"])
    with pytest.raises(ValueError, match="tiktoken"):
        tok.encode("hi", fast=True)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
def test_roundtrip_and_fast_equals_reference_on_any_unicode(text):
    tok = load_tokenizer()
    ids = tok.encode(text, allowed_special="none")
    assert tok.decode(ids) == text
    assert tok.encode(text, allowed_special="none", fast=False) == ids


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.sampled_from(list(" \n\t abcxyz'sé😀你1.")), max_size=80))
def test_fast_equals_reference_on_tricky_whitespace(text):
    tok = load_tokenizer()
    assert tok.encode_ordinary(text) == tok.encode_ordinary(text, fast=False)


# ------------------------------------------------------------------ special tokens and decode
def test_special_token_policy(shipped):
    text = f"The end.{EOT}Once"
    with pytest.raises(ValueError, match=r"special token '<\|endoftext\|>'"):
        shipped.encode(text)
    assert shipped.encode(text, allowed_special="all").count(2047) == 1
    assert shipped.encode(text, allowed_special={EOT}) == shipped.encode(text, allowed_special="all")
    plain = shipped.encode(text, allowed_special="none")
    assert 2047 not in plain and plain == shipped.encode_ordinary(text)
    assert shipped.encode(text, allowed_special=set()) == plain
    with pytest.raises(ValueError, match="not special tokens"):
        shipped.encode(text, allowed_special={"<|pad|>"})
    with pytest.raises(ValueError, match="allowed_special must be"):
        shipped.encode(text, allowed_special="some")
    with pytest.raises(TypeError, match="text must be a str"):
        shipped.encode(b"bytes")


def test_decode_replaces_invalid_utf8(shipped):
    ids = shipped.encode("😀")  # 4 bytes, no merges for them in a story vocab
    assert len(ids) >= 2
    assert shipped.decode(ids[:1]) == "\ufffd"
    assert shipped.decode_bytes(ids) == "😀".encode("utf-8")
    with pytest.raises(ValueError, match="not in this tokenizer's vocab"):
        shipped.decode([5000])


def test_decode_accepts_tensors(shipped):
    import torch

    ids = shipped.encode("Lily went home.")
    assert shipped.decode(torch.tensor(ids)) == "Lily went home."


# ------------------------------------------------------------------ files
def test_save_and_load_roundtrip(tmp_path):
    tok = BPETokenizer.train(load_corpus("val"), 400, special_tokens=[EOT, "<|pad|>"])
    tok.save(tmp_path)
    back = BPETokenizer.from_pretrained(tmp_path)
    assert back.merges == tok.merges and back.special_tokens == tok.special_tokens
    text = SAMPLES["mixed"] + "<|pad|>" + SAMPLES["english"]
    assert back.encode(text, allowed_special="all") == tok.encode(text, allowed_special="all")
    vocab = json.loads((tmp_path / "vocab.json").read_text(encoding="utf-8"))
    assert len(vocab) == 400 and vocab["Ġ"] == 32
    assert (tmp_path / "merges.txt").read_text(encoding="utf-8").startswith("#version: 0.2\n")


def test_from_pretrained_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        BPETokenizer.from_pretrained(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="vocab.json not found"):
        BPETokenizer.from_pretrained(tmp_path)
    tok = BPETokenizer.train("hello world hello world", 262)
    tok.save(tmp_path)
    (tmp_path / "vocab.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="vocab.json is not valid JSON"):
        BPETokenizer.from_pretrained(tmp_path)
    tok.save(tmp_path)
    with open(tmp_path / "merges.txt", "a", encoding="utf-8") as f:
        f.write("onlyonepart\n")
    with pytest.raises(ValueError, match="merges.txt line"):
        BPETokenizer.from_pretrained(tmp_path)
    tok.save(tmp_path)
    vocab = json.loads((tmp_path / "vocab.json").read_text(encoding="utf-8"))
    del vocab["Ġ"]
    (tmp_path / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    with pytest.raises(ValueError, match="single-byte tokens|not in the vocab"):
        BPETokenizer.from_pretrained(tmp_path)


def test_encode_text_and_eos_id_of_work_with_any_tokenizer():
    from llmnotes.tokenizer import encode_text, eos_id_of, load_tokenizer

    tok = load_tokenizer()
    eot = tok.eot_id
    assert eot not in encode_text(tok, "a <|endoftext|> b")  # untrusted text stays plain
    assert eot in encode_text(tok, "a <|endoftext|> b", allowed_special="all")
    assert eos_id_of(tok) == eot

    class Plain:  # no special-token policy, an eos_token_id attribute (Hugging Face's name)
        eos_token_id = 7

        def encode(self, text):
            return [ord(c) for c in text]

    assert encode_text(Plain(), "ab") == [97, 98] and eos_id_of(Plain()) == 7

    class Flag:
        eos_id = True  # a bool is not an id
        special_tokens = {"<|endoftext|>": 3}

    assert eos_id_of(Flag()) == 3 and eos_id_of(object()) is None
