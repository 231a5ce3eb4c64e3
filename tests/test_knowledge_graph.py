"""llmnotes.rag.knowledge_graph: entity patterns, co-occurrence weights, neighbours, expansion."""

import math

import pytest

from llmnotes.rag.knowledge_graph import KnowledgeGraph, extract_entities, split_sentences

TEXTS = ["QLoRA stores the base model in NF4. LoRA adds adapters. QLoRA builds on LoRA and NF4.",
         "GPTQ is a post-training quantizer. GPTQ and NF4 both make weights smaller on a GPU.",
         "PyTorch runs LoRA. PyTorch runs GPTQ. PyTorch runs everything."]


def test_entities_by_shape():
    assert extract_entities("GPT-2 and LLM.int8 use PyTorch on a GPU with 16 GB") == \
        {"GPT-2", "LLM.int8", "PyTorch"}
    assert extract_entities("plain lowercase words, One Capital") == set()
    assert extract_entities("KV caches and BM25 and LoRA") == {"KV", "BM25", "LoRA"}
    with pytest.raises(TypeError, match="text must be a str"):
        extract_entities(None)


def test_sentences():
    assert split_sentences("One. Two! Three? Four") == ["One.", "Two!", "Three?", "Four"]


def test_cooccurrence_counts_and_cosine_neighbours():
    g = KnowledgeGraph.from_texts(TEXTS, sources=["a", "b", "c"])
    assert g.mentions["QLoRA"] == 2 and g.mentions["NF4"] == 3 and g.mentions["PyTorch"] == 3
    assert g.adj["QLoRA"]["NF4"] == 2 and g.adj["NF4"]["QLoRA"] == 2
    assert g.adj["LoRA"]["QLoRA"] == 1
    # min_weight=1: LoRA's neighbours are QLoRA (1/sqrt(3*2)), NF4 (1/sqrt(3*3)), PyTorch (1/3)
    nb = dict(g.neighbours("LoRA", n=5, min_weight=1))
    assert nb["QLoRA"] == pytest.approx(1 / math.sqrt(6))
    assert nb["NF4"] == pytest.approx(1 / 3) and nb["PyTorch"] == pytest.approx(1 / 3)
    assert [o for o, _ in g.neighbours("LoRA", n=5, min_weight=1)][0] == "QLoRA"
    assert g.neighbours("QLoRA") == [("NF4", pytest.approx(2 / math.sqrt(6)))]  # min_weight=2
    assert g.is_a == [("GPTQ", "post-training quantizer", "b")]
    assert g.n_edges == g.to_networkx().number_of_edges()


def test_expand_query():
    g = KnowledgeGraph.from_texts(TEXTS)
    assert g.expand_query("what is QLoRA?") == "what is QLoRA? NF4"
    assert g.expand_query("what is QLoRA with NF4?") == "what is QLoRA with NF4?"  # already there
    assert g.expand_query("nothing known here") == "nothing known here"
    with pytest.raises(ValueError, match="query must be a non-empty str"):
        g.expand_query(" ")
    with pytest.raises(ValueError, match="n must be a positive int"):
        g.neighbours("QLoRA", n=0)
    with pytest.raises(ValueError, match="sources has 1 entries for 3 texts"):
        KnowledgeGraph.from_texts(TEXTS, sources=["x"])
