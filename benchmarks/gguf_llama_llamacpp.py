"""Does llama.cpp load llmnotes' Llama-style GGUF export and compute the same logits?

    python benchmarks/gguf_llama_llamacpp.py --llama-python /path/to/python-with-llama_cpp

Exports a `llama-tiny` model (random weights scaled x3 so logits spread out) as F32, F16 and
Q8_0, then runs llama.cpp (through llama-cpp-python in another interpreter: it is not a project
dependency) on the same token ids and compares its logits and tokenization with llmnotes'.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch

from llmnotes import GPT, GPTConfig
from llmnotes.quantize import export_gguf
from llmnotes.tokenizer import load_tokenizer

TEXT = "Once upon a time, a little fox found a red ball in the garden. She was happy."

CHECK = r'''
import json, sys, numpy as np
from llama_cpp import Llama
d = sys.argv[1]
ids = json.load(open(f"{d}/ids.json")); ref = np.load(f"{d}/ref.npy"); text = open(f"{d}/text.txt").read()
for q in ["F32", "F16", "Q8_0"]:
    llm = Llama(model_path=f"{d}/llama-{q}.gguf", logits_all=True, n_ctx=256, verbose=False)
    toks = llm.tokenize(text.encode(), add_bos=False, special=False)
    llm.eval(ids)
    got = np.array(llm.scores[: len(ids)])
    print(f"| {q} | {toks == ids} | {float(np.abs(got - ref).max()):.2e} | "
          f"{100 * float((got.argmax(-1) == ref.argmax(-1)).mean()):.1f}% |")
'''


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llama-python", required=True)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_preset("llama-tiny")).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    tok = load_tokenizer()
    ids = tok.encode(TEXT)
    with tempfile.TemporaryDirectory() as d:
        for q in ["F32", "F16", "Q8_0"]:
            export_gguf(model, tok, f"{d}/llama-{q}.gguf", q)
        with torch.no_grad():
            np.save(f"{d}/ref.npy", model(torch.tensor([ids]))[0].numpy())
        Path(d, "ids.json").write_text(json.dumps(ids), encoding="utf-8")
        Path(d, "text.txt").write_text(TEXT, encoding="utf-8")
        Path(d, "check.py").write_text(CHECK, encoding="utf-8")
        print("| file | token ids equal | max abs logit diff | argmax agreement |\n|---|---|---:|---:|")
        subprocess.run([args.llama_python, f"{d}/check.py", d], check=True)


if __name__ == "__main__":
    main()
