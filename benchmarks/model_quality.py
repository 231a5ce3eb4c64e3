"""Quality of the shipped base model: perplexity against the unigram baseline, and a checkable
proxy for coherent stories.

    python benchmarks/model_quality.py [--model tiny] [--samples 50] [--write]

1. **Perplexity** on the committed validation stories (``llmnotes/assets/corpus/val.txt``),
   in windows of the model's context, beside the *unigram baseline*: the cross-entropy of
   predicting every token from its training-set frequency alone (add-one smoothed). The ratio
   says how much the model learned beyond word frequencies.
2. **Coherence proxy.** ``--samples`` stories sampled at temperature 0.8 (seeds 0, 1, ...), each
   from the end-of-text token and one of the corpus's story openings ("Once upon a time", "One
   day", ... in turn; unprompted, the model may also write a Q/A or few-shot record of its
   mix), up to 160 new tokens or the next end-of-text. A sample is *coherent* when
   - its first sentence introduces a protagonist by name ("... a girl named Lily ...");
   - that name appears again after the first sentence (the story stays with its hero);
   - every word is a word of the corpus (its generator's templates and lists): no invented
     words like "pretges".
   That is the issue's proxy (``coherent_fraction``). A stricter one (``strict_fraction``) also
   asks that every other character name be introduced before it is used ("named X" or "friend
   X"): no one appears from nowhere. The corpus itself breaks that rule now and then (a story
   may mention "Stripes's bracelet" without introducing Stripes), so it is reported beside, not
   as, the target.
   Names are the generator's lists of children's and animals' names. This does not measure
   plot or style; it catches the two failures a small model shows first (losing track of who
   the story is about, and spelling non-words out of sub-word pieces).

3. **In-context learning**, as the Prompting page measures it: accuracy at 0/1/2/4/8 shots on
   word lookup with arbitrary labels (``lookup_accuracy_vs_shots``, 60 trials) and on the
   feelings sentences with arbitrary labels (``accuracy_vs_shots``, three draws). Chance is
   33% and 25%.

``--write`` stores the numbers in ``benchmarks/results/model_quality.json``, which pages read.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import re
import sys
from collections import Counter
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).parent / "results" / "model_quality.json"
CORPUS = ROOT / "llmnotes" / "assets" / "corpus"
WORD = re.compile(r"[A-Za-z]+(?:'[a-z]+)?")
sys.path.insert(0, str(CORPUS))  # the corpus generator's scripts (generate.py, records.py)


def corpus_words_and_names() -> tuple[set[str], set[str]]:
    """Every word the corpus generator can write, and every character name it uses."""
    import generate
    import records

    text = (CORPUS / "train.txt").read_text(encoding="utf-8") + (CORPUS / "val.txt").read_text(encoding="utf-8")
    sample_mix = "\n".join(t for _, t in records.mix_records(generate.generate(300, seed=7), seed=7))
    words = set(WORD.findall(text + sample_mix))
    names = set(generate.GIRLS) | set(generate.BOYS) | {name for _, name, _ in generate.ANIMALS}
    names |= set(records.NAMES["he"]) | set(records.NAMES["she"])
    return words, names


def unigram_cross_entropy(train_ids, val_ids, vocab_size: int) -> float:
    counts = Counter(train_ids)
    total = len(train_ids) + vocab_size
    return -sum(math.log((counts[t] + 1) / total) for t in val_ids) / len(val_ids)


@torch.no_grad()
def val_cross_entropy(model, ids: list[int]) -> float:
    T = model.config.block_size
    losses, n = 0.0, 0
    for i in range(0, len(ids) - T - 1, T):
        x = torch.tensor([ids[i:i + T]])
        y = torch.tensor([ids[i + 1:i + T + 1]])
        losses += torch.nn.functional.cross_entropy(model(x)[0], y[0], reduction="sum").item()
        n += T
    return losses / n


def is_coherent(story: str, words: set[str], names: set[str], strict: bool = False) -> tuple[bool, str]:
    """The proxy of the module docstring (``strict`` adds the introductions rule); returns
    (verdict, reason)."""
    first, _, rest = story.partition(". ")
    hero = re.search(r"named (\w+)", first)
    if not hero or hero.group(1) not in names:
        return False, "no named protagonist in the first sentence"
    if not re.search(rf"\b{hero.group(1)}\b", rest):
        return False, f"{hero.group(1)} is not mentioned after the first sentence"
    unknown = [w for w in WORD.findall(story) if w not in words]
    if unknown:
        return False, f"non-corpus words {unknown[:3]}"
    if not strict:
        return True, "ok"
    introduced = {hero.group(1)}
    for m in re.finditer(r"(named |friend )?\b([A-Z][a-z]+)\b", story):
        name = m.group(2)
        if name in names and name not in introduced:
            if not m.group(1):
                return False, f"{name} appears without being introduced"
            introduced.add(name)
    return True, "ok"


def sample_stories(model, tokenizer, n: int, temperature: float = 0.8, max_new_tokens: int = 160) -> list[str]:
    from llmnotes.sampling import generate

    from generate import TIMES

    eot = tokenizer.eot_id
    stories = []
    for seed in range(n):
        g = torch.Generator().manual_seed(seed)
        prompt = [eot] + tokenizer.encode(TIMES[seed % len(TIMES)])
        out = generate(model, torch.tensor([prompt]), max_new_tokens, temperature=temperature,
                       eos_id=eot, generator=g)[0, 1:].tolist()
        stories.append(tokenizer.decode([t for t in out if t != eot]).strip())
    return stories


def in_context(model, tokenizer) -> dict:
    from llmnotes.prompting import PromptTemplate, accuracy_vs_shots, load_labelled, lookup_accuracy_vs_shots

    shots = (0, 1, 2, 4, 8)
    lookup = lookup_accuracy_vs_shots(model, tokenizer, load_labelled("word_types"), shots, pool_per_class=2, trials=60)
    rename = {"happy": "blue", "sad": "star", "scared": "cup", "angry": "moon"}
    renamed = [{"text": r["text"], "label": rename[r["label"]]} for r in load_labelled("feelings_icl")]
    feelings = accuracy_vs_shots(model, tokenizer, renamed, shots, PromptTemplate("Sentence: {text}\nLabel:"))
    return {"word_lookup": lookup["accuracy"], "query_in_prompt": lookup["query_in_prompt"],
            "feelings_arbitrary": feelings}


def evaluate(model_name: str = "tiny", n_samples: int = 50) -> dict:
    from llmnotes import load_pretrained
    from llmnotes.data import load_tokens

    model, tok = load_pretrained(model_name)
    val, train = load_tokens("val").tolist(), load_tokens("train").tolist()
    ce = val_cross_entropy(model, val)
    uni = unigram_cross_entropy(train, val, tok.vocab_size)
    words, names = corpus_words_and_names()
    stories = sample_stories(model, tok, n_samples)
    verdicts = [is_coherent(s, words, names) for s in stories]
    strict = [is_coherent(s, words, names, strict=True)[0] for s in stories]
    return {"model": model_name, "val_cross_entropy": ce, "val_perplexity": math.exp(ce),
            "unigram_cross_entropy": uni, "unigram_perplexity": math.exp(uni),
            "samples": n_samples, "temperature": 0.8,
            "coherent_fraction": sum(v for v, _ in verdicts) / n_samples,
            "strict_fraction": sum(strict) / n_samples,
            "failures": Counter(r.split(" ")[0] if r.startswith("non") else re.sub(r"^\w+ ", "NAME ", r)
                                for v, r in verdicts if not v).most_common(),
            "example": next((s for s, (v, _) in zip(stories, verdicts) if v), stories[0]),
            "in_context": in_context(model, tok),
            "date": datetime.date.today().isoformat(), "torch": torch.__version__,
            "python": platform.python_version()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny")
    p.add_argument("--samples", type=int, default=50)
    p.add_argument("--write", action="store_true")
    args = p.parse_args()
    r = evaluate(args.model, args.samples)
    print(f"val perplexity {r['val_perplexity']:.2f} (cross-entropy {r['val_cross_entropy']:.3f} nats); "
          f"unigram baseline {r['unigram_perplexity']:.1f} ({r['unigram_cross_entropy']:.3f} nats)")
    print(f"coherent samples: {r['coherent_fraction']:.0%} of {r['samples']} at T=0.8 (strict: "
          f"{r['strict_fraction']:.0%}); failures {r['failures']}")
    for task, acc in r["in_context"].items():
        what = "share of prompts holding the query word" if task == "query_in_prompt" else "accuracy"
        print(f"{task}, {what} at 0/1/2/4/8 shots: " + ", ".join(f"{v:.0%}" for v in acc.values()))
    if args.write:
        OUT.parent.mkdir(exist_ok=True)
        OUT.write_text(json.dumps(r, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
