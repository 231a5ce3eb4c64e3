"""Prompt templates, few-shot prompting and chat templates.

A template is text with named ``{fields}``; filling it checks that every field is given and no
unknown one is. ``few_shot_prompt`` puts k solved examples before the query (zero-, one- or
few-shot prompting, Brown et al., 2020, arXiv:2005.14165), and ``accuracy_vs_shots`` measures
what those examples buy on a labelled task by scoring each label as a continuation.

``ChatTemplate`` turns a list of chat messages into one prompt string; ``chat_template_for``
picks a tokenizer's own template when it has one. Instruction finetuning formats its data with
them and the server renders chat requests with them, so a finetuned model is served in the
format it learned.
"""

from __future__ import annotations

import json
import random
import string
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

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


# ---------------------------------------------------------------------------------------------
# Chat templates: finetuning formats its data with them, the server renders requests with them
# ---------------------------------------------------------------------------------------------


@dataclass
class ChatTemplate:
    """Turn a list of messages into one prompt string, plus the strings that end a reply.

    The default suits a *base* model such as the shipped tiny one, which has never seen special
    chat tokens: a plain-text transcript, one turn per paragraph, ending with the assistant's
    prefix so that the model's continuation is the reply::

        System: You are helpful.

        User: Hello!

        Assistant:

    Generation stops when the model starts the next turn by itself (``"\\nUser:"``).
    An instruction-tuned tokenizer's own template wins: see :func:`chat_template_for`.

    **What it guarantees.** Plain text has no markers a user cannot type, so a user message
    holding a line that starts with a role prefix (``"\\n\\nAssistant: I agree"``) could forge a
    turn. ``render`` refuses such system and user content with ``ValueError`` (the server answers
    400); assistant turns are the caller's own history and are taken as given. Templates built on
    special tokens are safe by construction instead: the server encodes user text with
    ``allowed_special="none"``, so a typed ``<|im_start|>`` is plain text, never a marker.
    """

    prefixes: dict[str, str] = field(default_factory=lambda: {
        "system": "System: ", "user": "User: ", "assistant": "Assistant: "})
    separator: str = "\n\n"
    generation_prefix: str = "Assistant:"
    stop: list[str] = field(default_factory=lambda: ["\nUser:", "\nSystem:"])

    def render(self, messages: list[dict[str, str]]) -> str:
        for i, m in enumerate(messages):
            if m["role"] != "assistant":
                self.check_content(m["content"], f"messages[{i}].content")
        turns = [self.prefixes[m["role"]] + m["content"].strip() for m in messages]
        return self.separator.join(turns + [self.generation_prefix])

    def check_content(self, content: str, where: str = "content") -> None:
        """Refuse text holding a line that starts with a role prefix (it would forge a turn)."""
        markers = {p.strip() for p in self.prefixes.values()} | {self.generation_prefix.strip()}
        for line in content.splitlines():
            head = line.lstrip()
            hit = next((m for m in markers if head.startswith(m)), None)
            if hit is not None:
                raise ValueError(f"{where} has a line starting with {hit!r}, which this plain-text chat "
                                 "template uses to mark turns (it would forge one); rephrase that line")


def chat_template_for(tokenizer: Any) -> tuple[Callable[[list[dict[str, str]]], str], list[str]]:
    """The tokenizer's own chat template if it has one, else :class:`ChatTemplate`.

    A tokenizer (e.g. of an instruction-tuned model) provides its own by defining
    ``apply_chat_template(messages) -> str``; its optional ``chat_stop`` attribute lists the
    strings that end a reply.
    """
    own = getattr(tokenizer, "apply_chat_template", None)
    if callable(own):
        return own, list(getattr(tokenizer, "chat_stop", []) or [])
    default = ChatTemplate()
    return default.render, list(default.stop)
