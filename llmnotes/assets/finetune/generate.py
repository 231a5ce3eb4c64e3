"""Write the finetuning datasets that ship with llmnotes (nothing can be downloaded here).

Three JSON-lines files in the *tinytales* world of the shipped corpus (short, simple stories),
each row carrying a ``split`` of ``"train"`` or ``"test"``:

``classify.jsonl``     ``{"text", "label", "split"}``: a 2–3 sentence story snippet and the
                       feeling it shows: 0 happy, 1 sad, 2 scared, 3 angry (100 of each).
                       In a third of the snippets the reaction sentence is neutral, so the
                       feeling must be read from the event alone.
``instruct.jsonl``     ``{"instruction", "input", "output", "kind", "split"}`` (2,100 rows, 60 of
                       them held out: 10 per kind), Alpaca-style
                       (Taori et al., 2023): write a sentence, answer a question about a
                       context (what was found, where someone went, how they felt, who the
                       story is about), give a title. ``kind`` names the task for evaluation.
``preferences.jsonl``  ``{"prompt", "input", "chosen", "rejected", "split"}``: the same kinds of
                       requests with a good answer and a worse one (wrong fact, off-topic,
                       rambling repetition), for DPO.

The generator is deterministic: ``python llmnotes/assets/finetune/generate.py`` rewrites
byte-identical files beside itself.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from llmnotes.utils import atomic_write_text

HERE = Path(__file__).parent
LABELS = ["happy", "sad", "scared", "angry"]

GIRLS = ["Lily", "Mia", "Emma", "Sara", "Anna", "Lucy", "Zoe", "Ella", "Ruby", "Maya", "Nora", "Amy",
         "Rosa", "Ivy", "Leah", "Grace", "Tara", "Nina", "Daisy", "Kim"]
BOYS = ["Tom", "Ben", "Max", "Sam", "Leo", "Jack", "Finn", "Tim", "Noah", "Eli", "Omar", "Ravi",
        "Luke", "Adam", "Kai", "Milo", "Oscar", "Theo", "Hugo", "Ali"]
OBJECTS = ["ball", "kite", "hat", "doll", "book", "shell", "key", "cup", "drum", "boat", "bell",
           "sock", "crayon", "flower", "coin", "toy car", "ribbon", "stone", "spoon", "teddy bear"]
PLACES = ["park", "beach", "forest", "garden", "farm", "river", "hill", "market", "school", "pond",
          "library", "zoo", "meadow", "lake", "village"]
HIDING = ["a bush", "a big rock", "the bed", "a pile of leaves", "a tree", "the sand", "a bench",
          "a table", "an old box", "the grass"]
ANIMALS = ["dog", "cat", "rabbit", "bird", "duck", "frog", "bear", "fox", "mouse", "owl", "pig", "horse"]
ADJS = ["happy", "little", "big", "sleepy", "funny", "brave", "kind", "tiny", "fluffy", "hungry"]
ACTIONS = ["ran in the park", "played with a red ball", "jumped over a log", "slept under a tree",
           "ate a big apple", "swam in the pond", "looked at the stars", "sang a song in the sun",
           "found a friend in the garden", "rolled in the grass"]

EVENTS = {
    0: ["{n} got a new {o} for {p_pos} birthday.", "{n}'s friend came to play at the {pl}.",
        "{n} won the race at the {pl}.", "Mom baked a big cake for {n}.",
        "{n} found {p_pos} lost {o} at the {pl}.", "The sun came out and {n} went to the {pl}."],
    1: ["{n} lost {p_pos} {o} at the {pl}.", "{n}'s best friend moved far away.",
        "The rain washed away {n}'s sand castle.", "{n}'s {o} broke into pieces.",
        "{n} could not go to the {pl} today.", "{n}'s old dog was sick and could not play."],
    2: ["A loud storm shook the windows at night.", "{n} heard a strange noise in the dark.",
        "A big dog barked at {n} at the {pl}.", "{n} got lost in the {pl}.",
        "The lights went out and the house was dark.", "A huge spider crawled onto {n}'s {o}."],
    3: ["{n}'s brother broke {p_pos} {o} on purpose.", "Someone took {n}'s {o} and did not give it back.",
        "A boy pushed {n} at the {pl}.", "{n}'s sister ate all of {p_pos} cake.",
        "The other kids laughed at {n}'s {o}.", "{n} had to clean up a mess that was not {p_pos}."],
}
REACTIONS = {
    0: ["{n} smiled and danced around.", "{P} laughed and clapped {p_pos} hands.",
        "{n} jumped up and down with joy.", "{P} gave everyone a big hug.", "{n} felt happy all day."],
    1: ["{n} sat down and cried.", "A tear rolled down {p_pos} cheek.", "{P} felt very sad and quiet.",
        "{n} did not want to play anymore.", "{P} hugged {p_pos} pillow and sighed."],
    2: ["{n} hid under the blanket.", "{P} shook and held {p_pos} teddy tight.",
        "{n} ran to Mom as fast as {p} could.", "{P} was too scared to move.", "{n}'s heart beat very fast."],
    3: ["{n} stamped {p_pos} feet and shouted.", "{P} was very angry and said, \"That is not fair!\"",
        "{n} slammed the door.", "{P} made a fist and frowned.", "{n}'s face turned red and hot."],
}
NEUTRAL = ["Then {n} went home.", "It was a {w} day.", "After that, {n} had some soup.",
           "{n} looked out of the window."]
WEATHER = ["sunny", "windy", "cloudy", "cold", "warm"]


def person(rng: random.Random) -> dict[str, str]:
    girl = rng.random() < 0.5
    n = rng.choice(GIRLS if girl else BOYS)
    p, p_pos = ("she", "her") if girl else ("he", "his")
    return {"n": n, "p": p, "P": p.capitalize(), "p_pos": p_pos}


def fill(template: str, slots: dict[str, str]) -> str:
    out = template.format(**slots)
    return out[0].upper() + out[1:]


def snippet(rng: random.Random, label: int, neutral_rate: float = 1 / 3) -> tuple[str, dict[str, str]]:
    """A story snippet showing feeling ``label``; also returns its slots (name, pronouns...)."""
    s = {**person(rng), "o": rng.choice(OBJECTS), "pl": rng.choice(PLACES), "w": rng.choice(WEATHER)}
    event = fill(rng.choice(EVENTS[label]), s)
    react = fill(rng.choice(NEUTRAL if rng.random() < neutral_rate else REACTIONS[label]), s)
    return f"{event} {react}", s


def classify_rows(rng: random.Random, per_class: int = 100, test_per_class: int = 20) -> list[dict]:
    rows, seen = [], set()
    for label in range(len(LABELS)):
        made = 0
        while made < per_class:
            text, _ = snippet(rng, label)
            if text in seen:
                continue
            seen.add(text)
            rows.append({"text": text, "label": label, "split": "test" if made < test_per_class else "train"})
            made += 1
    rng.shuffle(rows)
    return rows


def find_story(rng: random.Random) -> dict[str, str]:
    s = {**person(rng), "o": rng.choice(OBJECTS), "pl": rng.choice(PLACES), "h": rng.choice(HIDING)}
    s["story"] = (f"{s['n']} went to the {s['pl']}. Under {s['h']}, {s['p']} found a {s['o']}. "
                  f"{s['P']} took it home and showed it to Mom.")
    return s


def instruct_item(rng: random.Random, kind: str) -> tuple[dict, str]:
    """One instruction example of ``kind`` and a worse answer for the preference data."""
    if kind == "sentence":
        adj, animal, act = rng.choice(ADJS), rng.choice(ANIMALS), rng.choice(ACTIONS)
        other = rng.choice([a for a in ANIMALS if a != animal])
        item = {"instruction": f"Write a sentence about a {adj} {animal}.", "input": "",
                "output": f"The {adj} {animal} {act}."}
        worse = rng.choice([f"The {other} {act}.", f"{animal} {animal} {animal} {animal}.", "I do not know."])
        return item, worse
    if kind == "feel":
        label = rng.randrange(len(LABELS))
        text, s = snippet(rng, label, neutral_rate=0.0)
        wrong = LABELS[(label + rng.randrange(1, len(LABELS))) % len(LABELS)]
        return ({"instruction": f"How did {s['n']} feel?", "input": text,
                 "output": f"{s['n']} felt {LABELS[label]}."}, f"{s['n']} felt {wrong}.")
    s = find_story(rng)
    if kind == "find":
        wrong = rng.choice([o for o in OBJECTS if o != s["o"]])
        return ({"instruction": f"What did {s['n']} find?", "input": s["story"],
                 "output": f"{s['n']} found a {s['o']}."}, f"{s['n']} found a {wrong}.")
    if kind == "where":
        wrong = rng.choice([p for p in PLACES if p != s["pl"]])
        return ({"instruction": f"Where did {s['n']} go?", "input": s["story"],
                 "output": f"{s['n']} went to the {s['pl']}."}, f"{s['n']} went to the {wrong}.")
    if kind == "who":
        return ({"instruction": "Who is the story about?", "input": s["story"],
                 "output": f"The story is about {s['n']}."}, "The story is about a big dog.")
    if kind == "title":
        title = f"{s['n']} and the {s['o'].title()}"
        return ({"instruction": "Give the story a title.", "input": s["story"], "output": title},
                f"The The The {s['pl'].title()}")
    raise ValueError(kind)


KINDS = ["sentence", "find", "where", "feel", "who", "title"]


#: Rows per kind. Questions about a story get many rows: with few, a small model memorises the
#: training answers (the names and objects it has seen) instead of learning to copy them from the
#: input. "sentence" has only 10 adjectives x 12 animals = 120 distinct requests.
PER_KIND = {"sentence": 100, "find": 400, "where": 400, "feel": 400, "who": 400, "title": 400}
PREFERENCE_ROWS_PER_KIND = 70  # the first 70 of each kind give the DPO pairs (a quarter of them)


def instruct_rows(rng: random.Random, per_kind: dict[str, int] = PER_KIND, test_per_kind: int = 10):
    rows, prefs, seen = [], [], set()
    for kind in KINDS:
        made = 0
        while made < per_kind[kind]:
            item, worse = instruct_item(rng, kind)
            key = (item["instruction"], item["input"])
            if key in seen:
                continue
            seen.add(key)
            split = "test" if made < test_per_kind else "train"
            rows.append({**item, "kind": kind, "split": split})
            if made % 4 == 0 and made < PREFERENCE_ROWS_PER_KIND:  # a quarter become preference pairs
                prefs.append({"prompt": item["instruction"], "input": item["input"], "chosen": item["output"],
                              "rejected": worse, "split": split})
            made += 1
    rng.shuffle(rows)
    rng.shuffle(prefs)
    return rows, prefs


def to_jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def main() -> None:
    rng = random.Random(2023)
    atomic_write_text(HERE / "classify.jsonl", to_jsonl(classify_rows(rng)))
    rows, prefs = instruct_rows(rng)
    atomic_write_text(HERE / "instruct.jsonl", to_jsonl(rows))
    atomic_write_text(HERE / "preferences.jsonl", to_jsonl(prefs))


if __name__ == "__main__":
    main()
