"""Prompt templates and few-shot prompting.

A template is text with named ``{fields}``; filling it checks that every field is given and no
unknown one is. ``few_shot_prompt`` puts k solved examples before the query (zero-, one- or
few-shot prompting, Brown et al., 2020, arXiv:2005.14165), and ``accuracy_vs_shots`` measures
what those examples buy on a labelled task by scoring each label as a continuation.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Mapping, Sequence

from llmnotes.evaluate import MCItem, multiple_choice_accuracy


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


SHIPPED_TASKS = ("feelings", "feelings_icl")


def load_labelled(path: str | Path | None = None) -> list[dict[str, str]]:
    """Rows of {"text", "label"}: a JSON-lines file, or a shipped task by name -- ``"feelings"``
    (the default: 48 sentences, 4 labels) or ``"feelings_icl"`` (48 event sentences for the
    in-context-learning measurement of the Prompting page)."""
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


def random_baseline(rows: Sequence[Mapping[str, str]]) -> float:
    """Accuracy of guessing uniformly among the labels."""
    return 1 / len({r["label"] for r in rows})

