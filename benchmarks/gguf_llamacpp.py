"""Does llama.cpp itself load our GGUF files, tokenize like us and compute the same logits?

    python benchmarks/gguf_llamacpp.py --llama-python /tmp/llamacpp-venv/bin/python

llama.cpp (through ``llama-cpp-python``) lives in its own virtual environment: it is a 15-minute
build on two cores and is not a dependency of llmnotes. This script (run with llmnotes' Python)
exports the shipped tiny model as F32, F16, BF16, Q8_0 and Q4_0, runs a small checker in the llama.cpp
environment that tokenizes test strings and evaluates a prompt with ``logits_all=True``, and
compares, per file:

* token ids: llama.cpp's ``tokenize`` vs ``BPETokenizer.encode`` on every test string;
* logits vs the fp32 PyTorch model (what quantization costs, llama.cpp's arithmetic included);
* logits vs the PyTorch model rebuilt from the file's own (dequantized) weights: this isolates
  llama.cpp's arithmetic (which also quantizes activations to 8 bits in Q8_0/Q4_0 matmuls) from
  the format's rounding.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch

from llmnotes import GPT, load_pretrained
from llmnotes.data import load_corpus
from llmnotes.convert.gguf import dequantize_q4_0, dequantize_q8_0, export_gguf, gguf_tensor_name

TEST_STRINGS = [
    "Once upon a time, a small fox found a red ball.",
    "Tom said: \"It's 12:30, let's go!\"  Then   they ran.\n\nThe end.",
    "numbers 3.14159 and 2048 apples; symbols @#$%^&*() and tabs\tand émojis 🦊 und Größe",
    "  leading spaces, trailing spaces   ",
    "they'll we've I'm you'd she's CAN'T",
]

CHECKER = r"""
import json, sys
import numpy as np
from llama_cpp import Llama
spec = json.load(open(sys.argv[1], encoding="utf-8"))
out = {}
for path in spec["files"]:
    llm = Llama(model_path=path, logits_all=True, n_ctx=spec["n_ctx"], verbose=False)
    toks = [llm.tokenize(s.encode("utf-8"), add_bos=False, special=False) for s in spec["strings"]]
    llm.reset()
    llm.eval(spec["prompt"])
    scores = np.array(llm.scores[: len(spec["prompt"])], dtype=np.float32)
    np.save(path + ".scores.npy", scores)
    out[path] = {"tokens": toks}
json.dump(out, open(sys.argv[2], "w", encoding="utf-8"))
"""


def model_from_gguf(path: Path, like: GPT) -> GPT:
    """A GPT whose weights are the (dequantized) tensors of a GGUF file we wrote."""
    from gguf import GGUFReader

    reader = GGUFReader(path)
    tensors = {t.name: t for t in reader.tensors}
    model = GPT(like.config).eval()
    state = {}
    for name, ref in like.state_dict().items():
        t = tensors[gguf_tensor_name(name)]
        data = np.asarray(t.data)
        kind = t.tensor_type.name
        if kind == "Q8_0":
            values = dequantize_q8_0(data)
        elif kind == "Q4_0":
            values = dequantize_q4_0(data)
        elif kind == "BF16":  # the gguf package's own decoding of the 16-bit words
            from gguf.quants import dequantize

            values = dequantize(data, t.tensor_type)
        else:
            values = data.astype(np.float32)
        state[name] = torch.from_numpy(values.reshape(tuple(ref.shape)).copy())
    model.load_state_dict(state)
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llama-python", required=True, help="python of the venv with llama-cpp-python")
    ap.add_argument("--model", default="tiny")
    args = ap.parse_args()

    model, tok = load_pretrained(args.model)
    prompt = tok.encode(load_corpus("val")[:2000], allowed_special="all")[:128]
    tmp = Path(tempfile.mkdtemp())
    files = {q: export_gguf(model, tok, tmp / f"tiny-{q}.gguf", q) for q in ("F32", "F16", "BF16", "Q8_0", "Q4_0")}
    spec = {"files": [str(p) for p in files.values()], "strings": TEST_STRINGS, "prompt": prompt,
            "n_ctx": model.config.block_size}
    (tmp / "spec.json").write_text(json.dumps(spec), encoding="utf-8")
    (tmp / "checker.py").write_text(CHECKER, encoding="utf-8")
    subprocess.run([args.llama_python, str(tmp / "checker.py"), str(tmp / "spec.json"), str(tmp / "out.json")],
                   check=True)
    result = json.loads((tmp / "out.json").read_text(encoding="utf-8"))
    ours_tokens = [tok.encode(s) for s in TEST_STRINGS]
    with torch.no_grad():
        ref = model(torch.tensor([prompt]))[0].numpy()

    print(f"prompt: {len(prompt)} tokens of validation text; {len(TEST_STRINGS)} test strings "
          f"({sum(map(len, ours_tokens))} tokens)\n")
    print("| file | bytes | token ids equal | max abs logit diff vs fp32 model | "
          "vs model from the file's weights | argmax agreement vs fp32 |")
    print("|---|---:|---|---:|---:|---:|")
    for q, path in files.items():
        scores = np.load(str(path) + ".scores.npy")
        same_tokens = result[str(path)]["tokens"] == ours_tokens
        with torch.no_grad():
            own = model_from_gguf(path, model)(torch.tensor([prompt]))[0].numpy()
        d_ref = np.abs(scores - ref).max()
        d_own = np.abs(scores - own).max()
        agree = (scores.argmax(-1) == ref.argmax(-1)).mean()
        print(f"| {q} | {path.stat().st_size:,} | {same_tokens} | {d_ref:.2e} | {d_own:.2e} | {agree:.1%} |")


if __name__ == "__main__":
    main()
