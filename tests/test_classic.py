"""llmnotes.classic against its oracles: scikit-learn (counts, TF-IDF) and NLTK (Porter)."""

import math

import numpy as np
import pytest

from llmnotes.classic import BagOfWords, NGramLM, idf, porter_stem, sentences, tfidf, words
from llmnotes.data import load_corpus

DOCS = ["The cat sat on the mat.", "The dog sat on the log!", "A cat and a dog met.",
        "Tom's cat, Tom's dog: friends.", "the the the"]


def test_bag_of_words_equals_countvectorizer():
    sklearn = pytest.importorskip("sklearn.feature_extraction.text")
    cv = sklearn.CountVectorizer()
    ref = cv.fit_transform(DOCS).toarray()
    bow = BagOfWords()
    ours = bow.fit_transform(DOCS)
    assert bow.vocabulary == cv.vocabulary_
    np.testing.assert_array_equal(ours, ref)
    cv2 = sklearn.CountVectorizer(min_df=2)
    np.testing.assert_array_equal(BagOfWords(min_df=2).fit_transform(DOCS), cv2.fit_transform(DOCS).toarray())


@pytest.mark.parametrize("smooth", [True, False])
@pytest.mark.parametrize("sublinear", [True, False])
@pytest.mark.parametrize("norm", ["l2", None])
def test_tfidf_equals_sklearn(smooth, sublinear, norm):
    sklearn = pytest.importorskip("sklearn.feature_extraction.text")
    ref = sklearn.TfidfVectorizer(smooth_idf=smooth, sublinear_tf=sublinear, norm=norm).fit(DOCS)
    counts = BagOfWords().fit_transform(DOCS)
    np.testing.assert_allclose(idf(counts, smooth), ref.idf_, rtol=1e-12)
    np.testing.assert_allclose(tfidf(counts, smooth, sublinear, norm), ref.transform(DOCS).toarray(), rtol=1e-12)


def test_tfidf_on_the_corpus_equals_sklearn():
    sklearn = pytest.importorskip("sklearn.feature_extraction.text")
    stories = load_corpus("val").split("<|endoftext|>")[:200]
    ref = sklearn.TfidfVectorizer().fit_transform(stories).toarray()
    np.testing.assert_allclose(tfidf(BagOfWords().fit_transform(stories)), ref, atol=1e-12)


def test_porter_equals_nltk_original_algorithm_on_the_corpus():
    porter = pytest.importorskip("nltk.stem.porter")
    ref = porter.PorterStemmer(mode=porter.PorterStemmer.ORIGINAL_ALGORITHM)
    vocab = sorted(set(words(load_corpus("train"), pattern=r"[a-z]+")))
    classic = ["caresses", "ponies", "ties", "caress", "cats", "feed", "agreed", "plastered", "motoring",
               "sing", "conflated", "troubled", "sized", "hopping", "tanned", "falling", "hissing",
               "fizzed", "failing", "filing", "happy", "sky", "relational", "conditional", "rational",
               "valenci", "digitizer", "conformabli", "radicalli", "differentli", "vileli", "analogousli",
               "vietnamization", "predication", "operator", "feudalism", "decisiveness", "hopefulness",
               "callousness", "formaliti", "sensitiviti", "sensibiliti", "triplicate", "formative",
               "formalize", "electriciti", "electrical", "hopeful", "goodness", "revival", "allowance",
               "inference", "airliner", "gyroscopic", "adjustable", "defensible", "irritant",
               "replacement", "adjustment", "dependent", "adoption", "homologou", "communism",
               "activate", "angulariti", "homologous", "effective", "bowdlerize", "probate", "rate",
               "cease", "controll", "roll", "generalizations", "oscillators"]
    # Porter's reference implementation leaves words of one or two letters alone; NLTK's
    # ORIGINAL_ALGORITHM mode does not (it strips "as" to "a"), so those are compared separately.
    for w in vocab + classic:
        if len(w) > 2:
            assert porter_stem(w) == ref.stem(w), w
        else:
            assert porter_stem(w) == w


def test_ngram_probabilities_sum_to_one_and_match_counts():
    lm = NGramLM(2, k=0.5).fit([["a", "b"], ["a", "c"], ["b"]])
    assert lm.vocab == ["a", "b", "c", "<unk>", "</s>"]
    for h in (["a"], ["b"], [], ["zzz"]):
        assert math.isclose(sum(lm.prob(h, w) for w in lm.vocab), 1.0)
    # count(a, b) = 1, count(a, *) = 2: (1 + 0.5) / (2 + 0.5 * 5)
    assert math.isclose(lm.prob(["a"], "b"), 1.5 / 4.5)
    assert lm.prob(["a"], "never-seen") == lm.prob(["a"], "<unk>")
    lp, n = lm.log_prob(["a", "b"])
    assert n == 3 and math.isclose(lp, math.log(lm.prob([], "a") * lm.prob(["a"], "b") * lm.prob(["b"], "</s>")))


def test_ngram_unigram_perplexity_is_exp_entropy():
    lm = NGramLM(1, k=1e-9).fit([["x", "y"], ["x"]])  # counts: x 2, y 1, </s> 2
    p = {"x": 2 / 5, "y": 1 / 5, "</s>": 2 / 5}
    expected = math.exp(-(2 * math.log(p["x"]) + math.log(p["y"]) + 2 * math.log(p["</s>"])) / 5)
    assert math.isclose(lm.perplexity([["x", "y"], ["x"]]), expected, rel_tol=1e-6)


def test_validation_names_the_argument():
    with pytest.raises(ValueError, match="n must be"):
        NGramLM(0)
    with pytest.raises(ValueError, match="k must be"):
        NGramLM(2, k=0)
    with pytest.raises(ValueError, match="not fitted"):
        NGramLM(2).prob([], "a")
    with pytest.raises(ValueError, match="min_df"):
        BagOfWords(min_df=0)
    with pytest.raises(TypeError, match="text must be a str"):
        words(b"x")
    with pytest.raises(ValueError, match="norm"):
        tfidf(np.ones((1, 1)), norm="l1")


def test_sentences_split_the_corpus():
    s = sentences("Tom ran. Mia sat!<|endoftext|>The end? Yes")
    assert s == [["tom", "ran"], ["mia", "sat"], ["the", "end"], ["yes"]]


# ------------------------------------------------------------------------------------------ pca


@pytest.mark.parametrize("shape,k", [((30, 7), 3), ((5, 12), 4), ((40, 2), 1)])
def test_pca_equals_sklearn(shape, k):
    decomposition = pytest.importorskip("sklearn.decomposition")
    from llmnotes.classic import pca

    x = np.random.default_rng(0).normal(size=shape) * np.arange(1, shape[1] + 1)  # unequal variances
    ref = decomposition.PCA(n_components=k, svd_solver="full").fit(x)
    scores, components, ratio = pca(x, k)
    np.testing.assert_allclose(components.numpy(), ref.components_, atol=1e-10)
    np.testing.assert_allclose(scores.numpy(), ref.transform(x), atol=1e-10)
    np.testing.assert_allclose(ratio.numpy(), ref.explained_variance_ratio_, atol=1e-12)


def test_pca_on_a_tensor_keeps_dtype_and_finds_the_line():
    import torch

    from llmnotes.classic import pca

    t = torch.linspace(-1, 1, 50)
    x = torch.stack([3 * t, -3 * t, torch.zeros_like(t)], dim=1).float()  # every point on one line
    scores, components, ratio = pca(x, 2)
    assert scores.dtype == torch.float32 and scores.shape == (50, 2)
    torch.testing.assert_close(ratio, torch.tensor([1.0, 0.0]), atol=1e-5, rtol=0)
    torch.testing.assert_close(components[0].abs(), torch.tensor([1.0, 1.0, 0.0]) / 2**0.5)


@pytest.mark.parametrize("x,k", [(np.zeros((4, 3)), 0), (np.zeros((4, 3)), 4), (np.zeros(5), 1)])
def test_pca_rejects_bad_input(x, k):
    from llmnotes.classic import pca

    with pytest.raises(ValueError, match="k must be|2-D"):
        pca(x, k)
