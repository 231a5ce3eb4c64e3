"""Forward+backward throughput: llmnotes GPT vs Hugging Face (GPT2LMHeadModel, LlamaForCausalLM,
...), same weights, same run; optionally batch-1 greedy decode speed too.

    python benchmarks/model.py --preset gpt2 --batch 4 --seq 256 --steps 5 [--compile] [--device cuda]
    python benchmarks/model.py --preset llama-tiny --decode 256

Both models get identical weights (llmnotes saves, transformers loads the directory). Runs are
interleaved (ours, theirs, ours, ...) so machine noise hits both alike; the median step time of
each is reported with tokens/s and the ratio. On CUDA the step runs under bf16 autocast and MFU
is reported against the GPU's peak (pass --peak-tflops).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from llmnotes import GPT, GPTConfig
from llmnotes.model import lm_loss
from llmnotes.utils import autocast, pick_device


def step_fn(model, idx, is_hf, dtype):
    def step():
        with autocast(idx.device, dtype):
            logits = model(idx).logits if is_hf else model(idx)
            loss = lm_loss(logits[:, :-1], idx[:, 1:])
        loss.backward()
        model.zero_grad(set_to_none=True)
    return step


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="gpt2")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--device", default=None)
    ap.add_argument("--peak-tflops", type=float, default=None, help="for MFU, e.g. 989 for H100 bf16 dense")
    ap.add_argument("--decode", type=int, default=0, help="also time greedy decoding of this many tokens")
    args = ap.parse_args()

    import transformers

    device = pick_device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else None
    torch.manual_seed(0)
    ours = GPT(GPTConfig.from_preset(args.preset))
    with tempfile.TemporaryDirectory() as d:
        ours.save_pretrained(d)
        theirs = transformers.AutoModelForCausalLM.from_pretrained(d, attn_implementation="sdpa")
    ours, theirs = ours.to(device).train(), theirs.to(device).train()
    if args.compile:
        ours_run, theirs_run = torch.compile(ours), torch.compile(theirs)
    else:
        ours_run, theirs_run = ours, theirs
    idx = torch.randint(0, ours.config.vocab_size, (args.batch, args.seq), device=device)
    steps = {"llmnotes": step_fn(ours_run, idx, False, dtype), "transformers": step_fn(theirs_run, idx, True, dtype)}
    times = {k: [] for k in steps}
    for i in range(args.warmup + args.steps):
        for name, fn in steps.items():
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            if i >= args.warmup:
                times[name].append(time.perf_counter() - t0)
    tokens = args.batch * args.seq
    print(f"device={device} preset={args.preset} batch={args.batch} seq={args.seq} "
          f"compile={args.compile} dtype={dtype or torch.float32} threads={torch.get_num_threads()}")
    med = {k: statistics.median(v) for k, v in times.items()}
    for name, t in med.items():
        line = f"{name:13s} {t * 1000:9.1f} ms/step {tokens / t:10.0f} tok/s"
        if args.peak_tflops:
            from llmnotes.calc import flops_per_token as fpt

            mfu = fpt(ours.config, args.seq) * tokens / t / (args.peak_tflops * 1e12)
            line += f"  MFU {100 * mfu:.1f}%"
        print(line)
    print(f"ratio llmnotes/transformers: {med['transformers'] / med['llmnotes']:.2f}x")
    if args.decode:
        decode(ours.eval(), theirs.eval(), args.decode, device)


@torch.no_grad()
def decode(ours, theirs, n_new: int, device) -> None:
    """Batch-1 greedy decoding: llmnotes' cached loop vs transformers' generate (dynamic cache)."""
    prompt = torch.randint(0, ours.config.vocab_size, (1, 16), device=device)
    n_new = min(n_new, ours.config.block_size - 16)

    def ours_fn():
        cache = ours.make_cache(1, max_len=16 + n_new)
        logits = ours(prompt, cache=cache)
        out = []
        for _ in range(n_new):
            nxt = logits[:, -1].argmax(-1, keepdim=True)
            out.append(nxt)
            logits = ours(nxt, cache=cache)
        return torch.cat([prompt, *out], 1)

    def theirs_fn():
        return theirs.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n_new,
                               min_new_tokens=n_new, do_sample=False, pad_token_id=0)

    times = {"llmnotes": [], "transformers": []}
    outs = {}
    for i in range(3):
        for name, fn in (("llmnotes", ours_fn), ("transformers", theirs_fn)):
            sync(device)
            t0 = time.perf_counter()
            outs[name] = fn()
            sync(device)
            if i:
                times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    for name, t in med.items():
        print(f"decode {name:13s} {n_new / t:8.1f} tok/s ({n_new} new tokens, batch 1)")
    print(f"decode ratio llmnotes/transformers: {med['transformers'] / med['llmnotes']:.2f}x; "
          f"same tokens: {torch.equal(outs['llmnotes'], outs['transformers'])}")


if __name__ == "__main__":
    main()
