"""What the fast quantized kernels cost in quality: perplexity on the shipped model, readable
path vs kernel path, and greedy tokens of the two.

    python benchmarks/qkernels_ppl.py [--tokens 64] [--json benchmarks/qkernels_ppl.json]

Model: ``llmnotes.load_pretrained("tiny")`` in float32. Text: the whole val split of the shipped
corpus (``llmnotes.data.load_tokens("val")``), windows of the model's context. Each quantized
model is evaluated twice: ``set_kernel(model, "reference")`` (dequantize, then matmul) and
``set_kernel(model, "fast")`` (the fastest CPU kernel; on whole windows that is PyTorch's, in
``llmnotes/qkernels.py``: int8 activations for int8, bf16 activations for int4). llmnotes' own
kernels (``llmnotes/native.py``) run only one-row inputs, the decoding case, so the
``native`` rows score the same split the way decoding runs: one token per forward through a
KV cache, with ``set_kernel(model, "native")``, beside the fp32 model scored the same way.
Greedy continuation of "Once upon a time" (``--tokens`` new tokens) is compared position by
position with the fp32 model's and the reference path's.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import llmnotes  # noqa: E402
from llmnotes import native, qkernels  # noqa: E402
from llmnotes.data import load_tokens  # noqa: E402
from llmnotes.quantize import QuantizedLinear, perplexity, quantize_model, set_kernel  # noqa: E402
from llmnotes.sampling import generate  # noqa: E402

SCHEMES = {  # name -> quantize_model arguments
    "int8": ("int8", {}),
    "int8+emb": ("int8", {"embeddings": True}),
    "int4 g32 sym (Q4_0-like) +emb": ("int4", {"group_size": 32, "symmetric": True, "embeddings": True}),
    "int4 g64": ("int4", {"group_size": 64}),
}


def decode_perplexity(model, ids: torch.Tensor, window: int) -> float:
    """Perplexity of ``ids`` computed one token per forward through a KV cache, as decoding runs
    (the one-row path), in non-overlapping windows of ``window`` tokens."""
    nll, count = 0.0, 0
    with torch.inference_mode():
        for start in range(0, ids.numel() - 1, window):
            chunk = ids[start:start + window + 1]
            cache = model.make_cache(1, window)
            for t in range(chunk.numel() - 1):
                logits = model(chunk[t:t + 1].view(1, 1), cache=cache)[0, -1]
                nll += F.cross_entropy(logits.float(), chunk[t + 1]).item()
                count += 1
    return math.exp(nll / count)


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
    window = model.config.block_size
    base_decode = decode_perplexity(model, val, window) if native.kernels() is not None else None
    if base_decode is not None:
        rows.append({"scheme": "fp32", "path": "one token at a time", "ppl": base_decode, "delta": 0.0,
                     "same_as_fp32": 1.0, "same_as_reference": 1.0})
    for name, (method, kw) in SCHEMES.items():
        q = quantize_model(copy.deepcopy(model), method, **kw)
        has_native = any(f"{method}-native" in m.kernel_names() for m in q.modules() if isinstance(m, QuantizedLinear))
        ref_tokens = None
        for path in ("reference", "fast") + (("native",) if has_native and base_decode else ()):
            set_kernel(q, path)
            ppl = decode_perplexity(q, val, window) if path == "native" else perplexity(q, val)
            base_path = base_decode if path == "native" else base
            out = generate(q, prompt, args.tokens, temperature=0)
            ref_tokens = out if ref_tokens is None else ref_tokens
            n = prompt.shape[1]
            rows.append({"scheme": name, "path": path, "ppl": ppl, "delta": ppl / base_path - 1,
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
