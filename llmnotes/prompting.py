"""Prompt templates and few-shot prompting.

A template is text with named ``{fields}``; filling it checks that every field is given and no
unknown one is. ``few_shot_prompt`` puts k solved examples before the query (zero-, one- or
few-shot prompting, Brown et al., 2020, arXiv:2005.14165), and ``accuracy_vs_shots`` measures
what those examples buy on a labelled task by scoring each label as a continuation.
"""

from __future__ import annotations

import json
import random
import string
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Mapping, Sequence

from llmnotes.evaluate import MCItem, choice_logprobs, multiple_choice_accuracy


@dataclass(frozen=True)
class PromptTemplate:
    """Text with ``{named}`` fields, e.g. ``PromptTemplate("Sentence: {text}\\nFeeling:")``."""

    template: str

    @property
    def fields(self) -> tuple[str, ...]:
        names = [name for _, name, _, _ in string.Formatter().parse(self.template) if name]
        return tuple(dict.fromkeys(names))

    def format(self, **values: object) -> str:
        missing = [f for f in self.fields if f not in values]
        unknown = [k for k in values if k not in self.fields]
        if missing:
            raise ValueError(f"template is missing values for {missing}; it needs {list(self.fields)}")
        if unknown:
            raise ValueError(f"template has no field(s) {unknown}; its fields are {list(self.fields)}")
        return self.template.format(**values)


def few_shot_prompt(template: PromptTemplate, examples: Sequence[Mapping[str, str]], query: Mapping[str, str],
                    answer_field: str, separator: str = "\n\n") -> str:
    """Solved examples (template + their answer) followed by the query's template, unanswered.

    Example:
        >>> t = PromptTemplate("Q: {q}\\nA:")
        >>> few_shot_prompt(t, [{"q": "2+2", "a": " 4"}], {"q": "3+3"}, answer_field="a")
        'Q: 2+2\\nA: 4\\n\\nQ: 3+3\\nA:'
    """
    shots = []
    for ex in examples:
        if answer_field not in ex:
            raise ValueError(f"example {dict(ex)} has no answer field {answer_field!r}")
        fields = {k: v for k, v in ex.items() if k != answer_field}
        shots.append(template.format(**fields) + ex[answer_field])
    return separator.join([*shots, template.format(**{k: v for k, v in query.items() if k != answer_field})])


SHIPPED_TASKS = ("feelings", "feelings_icl", "word_types")


def load_labelled(path: str | Path | None = None) -> list[dict[str, str]]:
    """Rows of {"text", "label"}: a JSON-lines file, or a shipped task by name -- ``"feelings"``
    (the default: 48 sentences, 4 labels), ``"feelings_icl"`` (48 event sentences for the
    in-context-learning measurement of the Prompting page) or ``"word_types"`` (48 words: animal,
    food or toy, for the in-context lookup measurement)."""
    shipped = resources.files("llmnotes").joinpath("assets/eval")
    name = "feelings" if path is None else str(path)
    if name in SHIPPED_TASKS:
        text = shipped.joinpath(f"{name}.jsonl").read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    for n, row in enumerate(rows, 1):
        if not row.get("text") or not row.get("label"):
            raise ValueError(f"row {n} needs non-empty 'text' and 'label', got {row}")
    return rows


FEELING_TEMPLATE = PromptTemplate("Sentence: {text}\nFeeling:")


def accuracy_vs_shots(model, tokenizer, rows: Sequence[Mapping[str, str]], shots: Sequence[int] = (0, 1, 2, 4, 8),
                      template: PromptTemplate = FEELING_TEMPLATE, seeds: Sequence[int] = (0, 1, 2),
                      ) -> dict[int, float]:
    """Mean accuracy over ``seeds`` (which examples are drawn) for each number of shots.

    Every label is scored as a continuation (" sad", " happy", ...) of the filled template; the
    examples are other rows with their label appended, as a reader of the prompt would see them.
    """
    labels = sorted({r["label"] for r in rows})
    items = [MCItem(template.format(text=r["text"]), tuple(" " + lab for lab in labels), labels.index(r["label"]))
             for r in rows]
    result = {}
    for k in shots:
        accs = [multiple_choice_accuracy(model, tokenizer, items, shots=k, seed=s) for s in (seeds if k else seeds[:1])]
        result[k] = sum(accs) / len(accs)
    return result


ARBITRARY_LABELS = ("red", "blue", "green", "gold", "pink", "gray", "moon", "star", "tree", "cup", "sock")
WORD_TEMPLATE = PromptTemplate("Word: {text}\nLabel:")


def lookup_accuracy_vs_shots(model, tokenizer, rows: Sequence[Mapping[str, str]], shots: Sequence[int] = (0, 1, 2, 4, 8),
                             pool_per_class: int = 2, trials: int = 60, template: PromptTemplate = WORD_TEMPLATE,
                             labels: Sequence[str] = ARBITRARY_LABELS, seed: int = 0) -> dict[str, dict[int, float]]:
    """In-context lookup: can the model read an arbitrary label off the examples in its prompt?

    Each trial renames the classes of ``rows`` with random words from ``labels`` (a new mapping
    per trial, so only the prompt can tell), picks ``pool_per_class`` items of each class, and
    asks for the label of one pool item after k examples drawn from the same pool. The
    examples of a smaller k are the first ones of a larger k, so the curves compare like with
    like. Labels are scored as continuations, as in :func:`accuracy_vs_shots`.

    Returns:
        ``{"accuracy": {k: ...}, "query_in_prompt": {k: ...}}``: the second is the fraction of
        trials whose query item is among the k examples (its label can be copied).
    """
    by_class: dict[str, list[str]] = {}
    for r in rows:
        by_class.setdefault(r["label"], []).append(r["text"])
    if len(labels) < len(by_class):
        raise ValueError(f"{len(by_class)} classes need at least as many label words, got {len(labels)}")
    if any(len(items) < pool_per_class for items in by_class.values()) or pool_per_class < 1:
        raise ValueError(f"pool_per_class must be between 1 and the smallest class size, got {pool_per_class}")
    if min(shots) < 0:
        raise ValueError(f"shots must be >= 0, got {list(shots)}")
    rng = random.Random(seed)
    hits = {k: 0 for k in shots}
    seen = {k: 0 for k in shots}
    was_training = model.training
    model.eval()
    try:
        for _ in range(trials):
            names = dict(zip(by_class, rng.sample(list(labels), len(by_class))))
            pool = [(item, names[c]) for c, items in by_class.items() for item in rng.sample(items, pool_per_class)]
            query = rng.choice(pool)
            examples = [{"text": t, "label": " " + lab} for t, lab in (rng.choice(pool) for _ in range(max(shots)))]
            choices = [" " + lab for lab in names.values()]
            for k in shots:
                context = few_shot_prompt(template, examples[:k], {"text": query[0]}, answer_field="label")
                scores = [lp for lp, _ in choice_logprobs(model, tokenizer, context, choices)]
                hits[k] += choices[scores.index(max(scores))] == " " + query[1]
                seen[k] += any(ex["text"] == query[0] for ex in examples[:k])
    finally:
        model.train(was_training)
    return {"accuracy": {k: hits[k] / trials for k in shots}, "query_in_prompt": {k: seen[k] / trials for k in shots}}


def random_baseline(rows: Sequence[Mapping[str, str]]) -> float:
    """Accuracy of guessing uniformly among the labels."""
    return 1 / len({r["label"] for r in rows})

