"""What the fast quantized kernels cost in quality: perplexity on the shipped model, readable
path vs kernel path, and greedy tokens of the two.

    python benchmarks/qkernels_ppl.py [--tokens 64] [--json benchmarks/qkernels_ppl.json]

Model: ``llmnotes.load_pretrained("tiny")`` in float32. Text: the whole val split of the shipped
corpus (``llmnotes.data.load_tokens("val")``), windows of the model's context. Each quantized
model is evaluated twice: ``set_kernel(model, "reference")`` (dequantize, then matmul) and
``set_kernel(model, "fast")`` (the CPU kernels of ``llmnotes/qkernels.py``: int8 activations
for int8, bf16 activations for int4). Greedy continuation of "Once upon a time" (``--tokens``
new tokens) is compared position by position with the fp32 model's and the reference path's.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import llmnotes  # noqa: E402
from llmnotes import qkernels  # noqa: E402
from llmnotes.data import load_tokens  # noqa: E402
from llmnotes.quantize import perplexity, quantize_model, set_kernel  # noqa: E402
from llmnotes.sampling import generate  # noqa: E402

SCHEMES = {  # name -> quantize_model arguments
    "int8": ("int8", {}),
    "int8+emb": ("int8", {"embeddings": True}),
    "int4 g32 sym (Q4_0-like) +emb": ("int4", {"group_size": 32, "symmetric": True, "embeddings": True}),
    "int4 g64": ("int4", {"group_size": 64}),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = ap.parse_args()
    torch.manual_seed(0)
    model, tok = llmnotes.load_pretrained("tiny")
    model = model.float().eval()
    val = torch.as_tensor(load_tokens("val", tok).astype("int64"))
    prompt = torch.tensor([tok.encode("Once upon a time")])
    base = perplexity(model, val)
    fp32_tokens = generate(model, prompt, args.tokens, temperature=0)
    rows = [{"scheme": "fp32", "path": "-", "ppl": base, "delta": 0.0, "same_as_fp32": 1.0, "same_as_reference": 1.0}]
    for name, (method, kw) in SCHEMES.items():
        q = quantize_model(copy.deepcopy(model), method, **kw)
        ref_tokens = None
        for path in ("reference", "fast"):
            set_kernel(q, path)
            ppl = perplexity(q, val)
            out = generate(q, prompt, args.tokens, temperature=0)
            ref_tokens = out if ref_tokens is None else ref_tokens
            n = prompt.shape[1]
            rows.append({"scheme": name, "path": path, "ppl": ppl, "delta": ppl / base - 1,
                         "same_as_fp32": (out[:, n:] == fp32_tokens[:, n:]).float().mean().item(),
                         "same_as_reference": (out[:, n:] == ref_tokens[:, n:]).float().mean().item()})
    print(f"CPU: {qkernels.cpu_line()}; torch {torch.__version__}; {datetime.date.today()}")
    print(f"shipped tiny model, val split ({val.numel():,} tokens); greedy: {args.tokens} new tokens")
    print("| scheme | path | perplexity | ΔPPL vs fp32 | greedy tokens = fp32 | = reference path |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['scheme']} | {r['path']} | {r['ppl']:.4f} | {100 * r['delta']:+.3f}% | "
              f"{100 * r['same_as_fp32']:.0f}% | {100 * r['same_as_reference']:.0f}% |")
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu": qkernels.cpu_line(), "date": str(datetime.date.today()),
                                               "torch": torch.__version__, "rows": rows}, indent=1) + "\n",
                                   encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
