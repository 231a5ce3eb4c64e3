"""Write ``feelings_icl.jsonl`` and ``word_types.jsonl``: the in-context-learning tasks of the
Prompting page.

48 event sentences, 12 for each of the four feelings the pretraining mix teaches (happy, sad,
scared, angry), drawn from the corpus generator's event templates with a seed of their own.
They are *not* unseen text: the templates are the pretraining mix's, and a template with only a
name slot writes sentences the mix also holds. That is deliberate: the model knows what each
sentence means, and the Prompting page asks whether it can learn from examples a *label* it
has never seen -- the feelings renamed to arbitrary words, a mapping that changes per prompt.

``word_types.jsonl`` holds the 48 words of the mix's word-type task (animal, food, toy), for the
in-context *lookup* measurement (``llmnotes.prompting.lookup_accuracy_vs_shots``).

    python llmnotes/assets/eval/make_icl.py     # rewrites both files beside itself
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "corpus"))
import records  # noqa: E402


def rows(per_class: int = 12, seed: int = 20261206) -> list[dict[str, str]]:
    rng, out, seen = random.Random(seed), [], set()
    for i in range(per_class * len(records.FEELINGS)):
        feeling = records.FEELINGS[i % len(records.FEELINGS)]
        text = records.feeling_sentence(rng, feeling)
        while text in seen:
            text = records.feeling_sentence(rng, feeling)
        seen.add(text)
        out.append({"text": text, "label": feeling})
    return out


def word_rows() -> list[dict[str, str]]:
    return [{"text": word, "label": kind} for kind, words in records.ANIMAL_TASK.items() for word in words]


if __name__ == "__main__":
    from llmnotes.utils import atomic_write_text

    atomic_write_text(HERE / "feelings_icl.jsonl", "".join(json.dumps(r) + "\n" for r in rows()))
    atomic_write_text(HERE / "word_types.jsonl", "".join(json.dumps(r) + "\n" for r in word_rows()))
