"""Instruction-style records for the *tinytales* pretraining mix (TinyStories-Instruct style).

Eldan & Li (2023, arXiv:2305.07759) trained their small models on stories *preceded by*
features of the story (words it must use, a summary), so that following an instruction is part
of what pretraining teaches. This module writes four record kinds, each a plain-text document
that sits between ``<|endoftext|>`` lines like a story:

``words``     ``Words: kite, park, Lily`` then ``Story:`` and a story that uses them: the story
              is conditioned on a request.
``qa``        a short story, then one to three ``Question:`` / ``Answer:`` pairs whose answer is
              copied from the story (``Answer: the beach``; "a little kite" is answered "a kite"): reading comprehension, the
              skill that instruction tuning later puts into a chat format.
``fewshot``   several labelled examples, then a query: ``Sentence: ... Feeling: sad``. Half of
              the records name the classes with their real words; the other half with a
              *per-record* random mapping to arbitrary label words (``red``, ``blue`` ...), so
              the only way to predict a label is to read the examples -- in-context learning,
              which the Prompting page measures (Wei et al., 2023, arXiv:2303.03846, use such
              semantically unrelated labels for the same reason).
``lookup``    few-shot lists with arbitrary labels over a *small pool* of items (two or three
              per class), so an item and its classmates come back within one list: the label
              of a repeated item can be looked up in the context. In-context *lookup* is what a
              model this small learns first (induction heads, Olsson et al., 2022,
              arXiv:2209.11895); mapping a *new* item to its class's label is harder. Only the
              fifth pretraining stage adds these (``generate.py --lookup``).
``story``     a plain story (the rest of the mix).

Answers are short spans on purpose: the instruction-tuning data (``assets/finetune``) asks for
whole-sentence answers in the Alpaca format, so finetuning still has something visible to teach
(the format), while pretraining supplies the skill (finding the span).
"""

from __future__ import annotations

import random
import re

FEELINGS = ["happy", "sad", "scared", "angry"]
# Arbitrary label words for the in-context-learning records: common words with no link to a
# feeling, so a label can only be learned from the examples in the same record.
ARBITRARY_LABELS = ["red", "blue", "green", "gold", "pink", "gray", "apple", "moon", "star",
                    "tree", "cup", "sock"]
ANIMAL_TASK = {"animal": ["dog", "cat", "duck", "frog", "bear", "fox", "owl", "pig", "horse",
                          "goat", "mouse", "lamb", "cow", "bee", "seal", "deer"],
               "food": ["apple", "cake", "bread", "pear", "plum", "soup", "grapes", "cheese",
                        "muffin", "cookie", "banana", "carrot", "peach", "nuts", "honey", "pie"],
               "toy": ["ball", "kite", "doll", "drum", "yo-yo", "robot", "puzzle", "top",
                       "wagon", "sled", "marble", "boat", "balloon", "whistle", "blocks", "car"]}

NAMES = {"she": ["Lily", "Mia", "Emma", "Sara", "Anna", "Lucy", "Zoe", "Ella", "Ruby", "Maya",
                 "Nora", "Amy", "Rosa", "Ivy", "Leah", "Grace", "Tara", "Nina", "Daisy", "Kim",
                 "Hana", "Chloe", "Jade", "Alice", "Bella", "Mei", "Eva", "Clara", "Isla", "Poppy"],
         "he": ["Tom", "Ben", "Max", "Sam", "Leo", "Jack", "Finn", "Tim", "Noah", "Eli", "Omar",
                "Ravi", "Luke", "Adam", "Kai", "Milo", "Oscar", "Theo", "Hugo", "Ali", "Jon",
                "Dan", "Ken", "Joe", "Liam", "Toby", "Felix", "Owen", "Ivan", "Nico"]}
OBJECTS = ["ball", "kite", "hat", "doll", "book", "shell", "key", "cup", "drum", "boat", "bell",
           "sock", "crayon", "flower", "coin", "toy car", "ribbon", "stone", "spoon", "teddy bear",
           "whistle", "marble", "scarf", "map", "bucket", "lantern"]
PLACES = ["park", "beach", "forest", "garden", "farm", "river", "hill", "market", "school",
          "pond", "library", "zoo", "meadow", "lake", "village", "playground", "orchard", "field"]
SPOTS = ["a bush", "a big rock", "the bed", "a pile of leaves", "a tree", "the sand", "a bench",
         "a table", "an old box", "the grass", "a log", "the stairs", "a basket", "the slide"]
ADULTS = ["Mom", "Dad", "Grandma", "Grandpa", "the teacher", "Nana", "Papa"]
EVENTS = {
    "happy": ["{n} got a new {o} for {his} birthday.", "{n}'s friend came to play at the {pl}.",
              "{n} won the race at the {pl}.", "Mom baked a big cake for {n}.",
              "{n} found {his} lost {o} at the {pl}.", "The sun came out and {n} went to the {pl}.",
              "{n} got a puppy for {his} birthday.", "Grandma gave {n} a big hug and a {o}."],
    "sad": ["{n} lost {his} {o} at the {pl}.", "{n}'s best friend moved far away.",
            "The rain washed away {n}'s sand castle.", "{n}'s {o} broke into pieces.",
            "{n} could not go to the {pl} today.", "{n}'s old dog was sick and could not play.",
            "Nobody came to {n}'s party.", "{n}'s balloon flew away into the sky."],
    "scared": ["A loud storm shook the windows at night.", "{n} heard a strange noise in the dark.",
               "A big dog barked at {n} at the {pl}.", "{n} got lost in the {pl}.",
               "The lights went out and the house was dark.", "A huge spider crawled onto {n}'s {o}.",
               "A big wave rushed at {n} on the beach.", "Something moved under {n}'s bed."],
    "angry": ["{n}'s brother broke {his} {o} on purpose.", "Someone took {n}'s {o} and did not give it back.",
              "A boy pushed {n} at the {pl}.", "{n}'s sister ate all of {his} cake.",
              "The other kids laughed at {n}'s {o}.", "{n} had to clean up a mess that was not {his}.",
              "A girl cut in front of {n} in the line.", "{n}'s friend broke a promise."],
}


def _person(r: random.Random) -> dict[str, str]:
    he = r.choice(["he", "she"])
    return {"n": r.choice(NAMES[he]), "he": he, "He": he.capitalize(),
            "his": "his" if he == "he" else "her", "him": "him" if he == "he" else "her"}


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def feeling_sentence(r: random.Random, feeling: str) -> str:
    """One event sentence that shows ``feeling`` (no feeling word in it)."""
    s = {**_person(r), "o": r.choice(OBJECTS), "pl": r.choice(PLACES)}
    return _cap(r.choice(EVENTS[feeling]).format(**s))


def words_record(r: random.Random, story: str, names: list[str]) -> str:
    """``Words: ...`` (three words the story uses) then the story."""
    words = [w for w in dict.fromkeys(names) if w in story][:1]
    pool = [w for w in OBJECTS + PLACES + FEELINGS if f" {w}" in story and w not in words]
    words += r.sample(pool, min(len(pool), 3 - len(words)))
    r.shuffle(words)
    return f"Words: {', '.join(words)}\nStory: {story}"


def qa_record(r: random.Random) -> str:
    """A three-sentence story about a named child, then questions answered by copied spans."""
    s = {**_person(r), "o": r.choice(OBJECTS), "pl": r.choice(PLACES), "sp": r.choice(SPOTS),
         "a": r.choice(ADULTS), "f": r.choice(FEELINGS)}
    went = r.choice(["{n} went to the {pl}.", "One day, {n} walked to the {pl}.",
                     "{n} and {his} dog ran to the {pl}.", "In the morning, {n} played at the {pl}."])
    found, where = r.choice([("Under {sp}, {he} found a {o}.", "under {sp}"),
                             ("Near {sp}, {he} saw a {o}.", "near {sp}"),
                             ("Behind {sp}, {he} found a little {o}.", "behind {sp}"),
                             ("{He} looked under {sp} and found a {o}.", "under {sp}")])
    after = r.choice(["{He} took it home and showed it to {a}.", "{He} gave it to {a}.",
                      "{He} felt {f} and ran home to {a}.", "{He} put it in {his} pocket."])
    story = " ".join(_cap(t.format(**s)) for t in (went, found, after))
    qa = [("Where did {n} go?", "the {pl}"), ("What did {n} find?", "a {o}"),
          ("Who is the story about?", "{n}"), ("Where was the {o}?", where)]
    if "felt" in after:
        qa.append(("How did {n} feel?", "{f}"))
    picked = r.sample(qa, r.choice([1, 2, 2, 3]))
    lines = [story, ""] + [f"Question: {q.format(**s)}\nAnswer: {a.format(**s)}" for q, a in picked]
    return "\n".join(lines)


def fewshot_record(r: random.Random) -> str:
    """2 to 8 labelled examples and a query, on one of two tasks; real or arbitrary label words."""
    if r.random() < 0.6:
        classes, field, make = FEELINGS, "Sentence", lambda c: feeling_sentence(r, c)
        real_name = "Feeling"
    else:
        classes, field, make = list(ANIMAL_TASK), "Word", lambda c: r.choice(ANIMAL_TASK[c])
        real_name = "Type"
    if r.random() < 0.5:
        names, label_field = dict(zip(classes, classes)), real_name
    else:
        names, label_field = dict(zip(classes, r.sample(ARBITRARY_LABELS, len(classes)))), "Label"
    n = r.randint(3, 9)
    rows = []
    for _ in range(n):
        c = r.choice(classes)
        rows.append(f"{field}: {make(c)}\n{label_field}: {names[c]}")
    return "\n\n".join(rows)


def lookup_record(r: random.Random) -> str:
    """5 to 12 examples with arbitrary labels, drawn from a pool of 2 or 3 items per class."""
    if r.random() < 0.5:
        classes, field = r.sample(FEELINGS, r.randint(2, 4)), "Sentence"
        pool = {c: [feeling_sentence(r, c) for _ in range(r.randint(2, 3))] for c in classes}
    else:
        classes, field = list(ANIMAL_TASK), "Word"
        pool = {c: r.sample(ANIMAL_TASK[c], r.randint(2, 3)) for c in classes}
    names = dict(zip(classes, r.sample(ARBITRARY_LABELS, len(classes))))
    rows = []
    for _ in range(r.randint(5, 12)):
        c = r.choice(classes)
        rows.append(f"{field}: {r.choice(pool[c])}\nLabel: {names[c]}")
    return "\n\n".join(rows)


def mix_records(stories: list[str], seed: int,
                fractions: dict[str, float] | None = None) -> list[tuple[str, str]]:
    """``(kind, text)`` for every story (as itself or as a ``words`` record) plus the extra
    ``qa``, ``fewshot`` (and ``lookup``) records, shuffled with ``seed``.

    ``fractions`` gives, per extra kind, how many records to add per story, and for ``words``
    the share of stories that get a ``Words:`` header.
    """
    fr = {"words": 0.15, "qa": 0.5, "fewshot": 0.4, "lookup": 0.0, **(fractions or {})}
    r = random.Random(seed)
    out = []
    for story in stories:
        if r.random() < fr["words"]:
            out.append(("words", words_record(r, story, re.findall(r"named (\w+)", story))))
        else:
            out.append(("story", story))
    n = len(stories)
    out += [("qa", qa_record(r)) for _ in range(round(n * fr["qa"]))]
    out += [("fewshot", fewshot_record(r)) for _ in range(round(n * fr["fewshot"]))]
    out += [("lookup", lookup_record(r)) for _ in range(round(n * fr["lookup"]))]
    r.shuffle(out)
    return out
