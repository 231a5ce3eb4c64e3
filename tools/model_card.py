"""Write the model cards of the shipped models from their recorded facts.

A model card (Mitchell et al., 2019, arXiv:1810.03993) says what a model is, how it was made,
what it is for, how well it does and where it fails. On a model hub it is the ``README.md`` of
the model's repository, with YAML metadata on top (Hugging Face's format). The cards of
``tiny`` and ``tiny-instruct`` are generated, never typed: every number comes from
``train_summary.json``, ``finetune_summary.json`` and ``benchmarks/results/model_quality.json``,
so a retrained model gets a correct card by running

    python tools/model_card.py --write

``tests/test_model_card.py`` fails when a committed card differs from what this script writes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "llmnotes" / "assets"
QUALITY = ROOT / "benchmarks" / "results" / "model_quality.json"
sys.path.insert(0, str(ROOT))  # run from a checkout: the package beside this script

from llmnotes import GPTConfig  # noqa: E402
from llmnotes.calc import count_params  # noqa: E402


def _read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _shots(curve: dict) -> str:
    return ", ".join(f"{int(k)}: {v:.0%}" for k, v in curve.items())


def tiny_card() -> str:
    s, q = _read(ASSETS / "tiny" / "train_summary.json"), _read(QUALITY)
    c = s["model_config"]
    n_params = count_params(GPTConfig.from_dict(c))
    stages = "\n".join(f"| {i} | {st['steps']:,} | {st['tokens_seen']:,} | {st['train_loss']:.3f} | "
                       f"{st['val_loss']:.3f} | {st['seconds']:,.0f} |"
                       for i, st in enumerate(s["stages"], 1))
    ic = q["in_context"]
    return f"""---
license: mit
language: en
library_name: llmnotes
pipeline_tag: text-generation
tags: [gpt, tiny, educational, tinystories-style]
---

# tiny

A {n_params / 1e6:.1f}-million-parameter GPT ({c['n_layer']} layers, {c['n_head']} heads, {c['n_embd']} dimensions,
context {c['block_size']}, byte-level BPE vocabulary of {c['vocab_size']}) trained from scratch by `llmnotes train`
on *tinytales*, a corpus of generated children's stories, plus instruction-style records. It is the
model every page of the llmnotes site runs on: small enough to answer in milliseconds on a CPU.

- **Load:** `model, tok = llmnotes.load_pretrained("tiny")` (fp16 safetensors, loaded as fp32).
- **Intended use:** teaching and experiments: sampling, finetuning, quantization, serving at toy
  scale. It knows only the corpus's world (children, animals, parks, feelings) and its 2,048-token
  vocabulary.
- **Out of scope:** anything factual, anything outside the stories' vocabulary, any real user.

## Training

Data: `{s['data_command']}` ({s['data']['train_tokens']:,} training tokens), and for the last stage
the same mix with in-context lookup lists (`--lookup 1.0`). {len(s['stages'])} stages, each continuing the
previous weights (`--init-from`) with its own warmup and cosine schedule; the commands and seeds are
in `train_summary.json`.

| stage | steps | tokens | train loss | val loss (that stage's mix) | seconds |
|---:|---:|---:|---:|---:|---:|
{stages}

In all: {s['steps']:,} steps, {s['tokens_seen']:,} tokens ({s['tokens_seen'] / n_params:.0f} per parameter; Chinchilla's
compute-optimal ratio is about 20), {s['seconds'] / 60:.0f} minutes. Environment: {s['environment']}.

## Evaluation

`python benchmarks/model_quality.py --write` ({q['date']}):

| measure | value |
|---|---|
| validation perplexity (committed val stories) | {q['val_perplexity']:.2f} ({q['val_cross_entropy']:.3f} nats/token) |
| unigram baseline on the same tokens | {q['unigram_perplexity']:.0f} ({q['unigram_cross_entropy']:.3f} nats/token) |
| coherent samples (protagonist kept, corpus words only), {q['samples']} at T = {q['temperature']} | {q['coherent_fraction']:.0%} |
| stricter: no character appears without an introduction | {q['strict_fraction']:.0%} |
| word lookup with arbitrary labels, accuracy by shots | {_shots(ic['word_lookup'])} |
| feelings with arbitrary labels, accuracy by shots | {_shots(ic['feelings_arbitrary'])} |

## Limitations

- Stories are templated: the model's fluency is the generator's, and its perplexity says how well it
  learnt those templates, not English.
- It invents no facts only because it knows none; with prompts outside the corpus it produces
  fluent nonsense in the corpus's style.
- No safety tuning: it was never trained to refuse anything, and has no notion of harm.
"""


def tiny_instruct_card() -> str:
    s = _read(ASSETS / "tiny-instruct" / "finetune_summary.json")
    a = _read(ASSETS / "tiny-instruct" / "adapter_config.json")
    rows = "\n".join(f"| {name} | `{r['command']}` | {r['before']:.0%} | {r['after']:.0%} |"
                     for name, r in (("LoRA (shipped)", s["lora"]), ("full finetune", s["full"]),
                                     ("QLoRA", s["qlora"])))
    kinds = ", ".join(f"{k} {v:.0%}" for k, v in s["lora"]["by_kind"].items())
    dpo = s["dpo"]
    return f"""---
license: mit
language: en
library_name: peft
base_model: tiny
pipeline_tag: text-generation
tags: [lora, instruction-tuning, llmnotes, educational]
---

# tiny-instruct

`tiny` with a LoRA adapter (rank {a['r']}, alpha {a['lora_alpha']:g}, on {', '.join(a['target_modules'])} of every block)
trained to answer requests in the Alpaca format: who a short story is about, where someone went,
what they found, how they felt, a title, or a sentence about an animal. It is stored in the PEFT
layout (`adapter_config.json` + `adapter_model.safetensors`) and merged into `tiny` on load.

- **Load:** `model, tok = llmnotes.load_pretrained("tiny-instruct")`; prompts with
  `llmnotes.finetune.format_alpaca(instruction, input)`.
- **Intended use and limits:** those of `tiny`, narrowed to the six request kinds of
  `llmnotes/assets/finetune/instruct.jsonl`; other requests get answers in the same shapes.

## Training and evaluation

2,040 training requests, 60 held out (10 per kind), greedy replies, exact match after
normalisation (open "sentence" requests by a rubric):

| run | command | held-out before | after |
|---|---|---:|---:|
{rows}

Shipped adapter, held-out by kind: {kinds}. Preference tuning (DPO, LoRA r=8) on top of `tiny` raised
the held-out preferred-response rate from {dpo['before']['preferred']:.0%} to {dpo['after']['preferred']:.0%} (`{dpo['command']}`).
Measured on: {s['machine']}.
"""


CARDS = {"tiny": tiny_card, "tiny-instruct": tiny_instruct_card}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--write", action="store_true", help="write llmnotes/assets/<model>/README.md")
    args = p.parse_args(argv)
    for name, make in CARDS.items():
        text = make()
        if args.write:
            (ASSETS / name / "README.md").write_text(text, encoding="utf-8")
            print(f"wrote llmnotes/assets/{name}/README.md")
        else:
            sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
