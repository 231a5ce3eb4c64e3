"""Perplexity and multiple-choice scoring against direct cross-entropy computations."""

import math

import pytest
import torch
import torch.nn.functional as F

from llmnotes import GPT, GPTConfig
from llmnotes.evaluate import (MCItem, choice_logprobs, few_shot_context, load_mc_items,
                               multiple_choice_accuracy, perplexity, token_nll)
from llmnotes.prompting import (PromptTemplate, accuracy_vs_shots, few_shot_prompt, load_labelled,
                                 lookup_accuracy_vs_shots)
from llmnotes.tokenizer import load_tokenizer


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GPT(GPTConfig.from_preset("nano", vocab_size=2048)).eval()


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


def test_perplexity_is_exp_mean_cross_entropy(model):
    ids = torch.randint(0, 2048, (50,))
    with torch.no_grad():
        ce = F.cross_entropy(model(ids[None, :-1])[0], ids[1:])
    assert perplexity(model, ids.tolist()) == pytest.approx(math.exp(ce.item()), rel=1e-5)


def test_sliding_window_scores_each_token_once_with_max_context(model):
    ids = torch.randint(0, 2048, (150,)).tolist()   # longer than block_size 64
    nll = token_nll(model, ids, stride=16)
    assert nll.shape == (149,)
    # token 100 is scored in the window starting at 48 (the last one that contains it as new)
    window = torch.tensor([ids[48:48 + 64]])
    with torch.no_grad():
        logp = F.log_softmax(model(window[:, :-1])[0], -1)
    assert nll[99].item() == pytest.approx(-logp[100 - 48 - 1, ids[100]].item(), rel=1e-5)
    # disjoint windows (stride = block) also cover every token exactly once
    assert token_nll(model, ids).shape == (149,)


def test_perplexity_of_text_needs_tokenizer(model, tok):
    with pytest.raises(ValueError, match="needs tokenizer"):
        perplexity(model, "hello")
    with pytest.raises(ValueError, match="empty"):
        perplexity(model, "", tok)
    assert perplexity(model, "Once upon a time there was a fox.", tok) > 1


def test_choice_logprobs_match_manual(model, tok):
    ctx, choice = "The dog wagged its", " tail"
    (lp, n), = choice_logprobs(model, tok, ctx, [choice])
    ids = tok.encode(ctx) + tok.encode(choice)
    with torch.no_grad():
        logp = F.log_softmax(model(torch.tensor([ids[:-1]]))[0], -1)
    c = tok.encode(choice)
    manual = sum(logp[len(ids) - len(c) - 1 + i, t].item() for i, t in enumerate(c))
    assert n == len(c) and lp == pytest.approx(manual, rel=1e-5)


def test_choice_logprobs_share_the_context_and_equal_one_pass_per_choice(model, tok):
    """The cached, batched scoring (context once, choices right-padded) equals a full forward
    pass per choice, for choices of different lengths and a context longer than the model's."""
    from llmnotes.evaluate import _choice_logprobs_uncached

    choices = [" tail", " a very long tail indeed", " x", " wagging happily"]
    conts = [tok.encode(c) for c in choices]
    for ctx in ["The dog wagged its", "the dog ran " * 200]:
        got = choice_logprobs(model, tok, ctx, choices)
        keep = model.config.block_size + 1 - max(len(c) for c in conts)
        want = _choice_logprobs_uncached(model, tok.encode(ctx)[-keep:], conts)
        assert [n for _, n in got] == [len(c) for c in conts]
        for (a, _), (b, _) in zip(got, want):
            assert a == pytest.approx(b, rel=1e-4, abs=1e-4)
    with pytest.raises(ValueError, match="no tokens"):
        choice_logprobs(model, tok, "", [" tail"])


def test_mc_accuracy_picks_the_best_choice(tok):
    class Oracle(torch.nn.Module):
        """Puts all probability on token ids of the word ' tail'."""
        config = GPTConfig.from_preset("nano", vocab_size=2048)

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, idx):
            logits = torch.full((*idx.shape, 2048), -10.0)
            logits[..., tok.encode(" tail")] = 10.0
            return logits

    items = [MCItem("The dog wagged its", (" hat", " tail"), 1), MCItem("A", (" tail", " hat"), 0)]
    assert multiple_choice_accuracy(Oracle(), tok, items) == 1.0
    assert multiple_choice_accuracy(Oracle(), tok, items, normalize="byte") == 1.0


def test_shipped_items_and_few_shot(tok):
    items = load_mc_items()
    assert len(items) >= 40 and all(len(i.choices) == 4 for i in items)
    ctx = few_shot_context(items[0], items[1:3])
    assert ctx.endswith(items[0].context) and items[1].choices[items[1].answer] in ctx


def test_accuracy_vs_shots_runs(model, tok):
    rows = load_labelled()[:8]
    acc = accuracy_vs_shots(model, tok, rows, shots=(0, 2), seeds=(0,))
    assert set(acc) == {0, 2} and all(0 <= a <= 1 for a in acc.values())


@pytest.mark.parametrize("kwargs,msg", [
    (dict(items=[]), "empty"), (dict(normalize="chars"), "normalize must be"), (dict(shots=5), "shots must be"),
])
def test_mc_bad_arguments(model, tok, kwargs, msg):
    args = dict(items=[MCItem("a", (" b", " c"), 0)] * 2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=msg):
        multiple_choice_accuracy(model, tok, **args)


def test_mc_item_validation():
    with pytest.raises(ValueError, match="out of range"):
        MCItem("ctx", (" a", " b"), 2)
    with pytest.raises(ValueError, match="at least 2"):
        MCItem("ctx", (" a",), 0)


def test_prompt_template_checks_fields():
    t = PromptTemplate("Sentence: {text}\nFeeling:")
    assert t.fields == ("text",)
    with pytest.raises(ValueError, match="missing values for \\['text'\\]"):
        t.format()
    with pytest.raises(ValueError, match="no field"):
        t.format(text="x", label="y")
    p = few_shot_prompt(t, [{"text": "I won.", "label": " proud"}], {"text": "I lost."}, answer_field="label")
    assert p == "Sentence: I won.\nFeeling: proud\n\nSentence: I lost.\nFeeling:"


class LookupOracle(torch.nn.Module):
    """A stand-in model that does in-context lookup perfectly: at the last position it puts all
    its probability on the label last shown for the query word, and is uniform otherwise."""

    def __init__(self, tok):
        super().__init__()
        self.tok, self.config = tok, GPTConfig.from_preset("tiny")
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        ids = x[0].tolist()
        logits = torch.zeros(1, len(ids), 2048)
        n_tail = next(j for j in range(len(ids)) if self.tok.decode(ids[:len(ids) - j]).endswith("Label:"))
        text = self.tok.decode(ids[:len(ids) - n_tail])  # the prompt; the rest is a label being scored
        query = text.rsplit("Word: ", 1)[-1].split("\n")[0]
        shown = [b.split("\nLabel:") for b in text.split("\n\n")[:-1]]
        labels = [b[1] for b in shown if len(b) == 2 and b[0] == f"Word: {query}"]
        if labels:  # predict the label's tokens one after another, from where the prompt ends
            for i, token in enumerate(self.tok.encode(labels[-1])[:n_tail + 1]):
                logits[0, len(ids) - 1 - n_tail + i, token] = 100.0
        return logits


def test_lookup_accuracy_reads_labels_off_the_prompt(tok):
    rows = load_labelled("word_types")
    assert len(rows) == 48 and {r["label"] for r in rows} == {"animal", "food", "toy"}
    result = lookup_accuracy_vs_shots(LookupOracle(tok), tok, rows, shots=(0, 1, 4, 8), trials=30)
    seen, acc = result["query_in_prompt"], result["accuracy"]
    assert seen[0] == 0 and seen[1] <= seen[4] <= seen[8] and seen[8] > 0.5  # nested examples
    # the oracle is right whenever the query is in the prompt; otherwise ties go to the first choice
    assert all(acc[k] >= seen[k] for k in seen) and acc[8] > acc[0]
    assert result == lookup_accuracy_vs_shots(LookupOracle(tok), tok, rows, shots=(0, 1, 4, 8), trials=30)


@pytest.mark.parametrize("kwargs,msg", [(dict(pool_per_class=0), "pool_per_class"), (dict(pool_per_class=17), "pool_per_class"),
                                        (dict(labels=("a", "b")), "label words"), (dict(shots=(-1, 2)), "shots")])
def test_lookup_bad_arguments(model, tok, kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        lookup_accuracy_vs_shots(model, tok, load_labelled("word_types"), trials=1, **kwargs)
