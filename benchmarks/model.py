"""Forward+backward throughput: llmnotes GPT vs Hugging Face (GPT2LMHeadModel, LlamaForCausalLM,
...), same weights, same run; optionally batch-1 greedy decode speed too.

    python benchmarks/model.py --preset gpt2 --batch 4 --seq 256 --steps 5 [--compile] [--device cuda]
    python benchmarks/model.py --preset llama-tiny --decode 256

Both models get identical weights (llmnotes saves, transformers loads the directory). Runs are
interleaved (ours, theirs, ours, ...) so machine noise hits both alike; the median step time of
each is reported with tokens/s and the ratio. On CUDA the step runs under bf16 autocast and MFU
is reported against the GPU's peak (pass --peak-tflops).

On a CPU, ``--roofline`` measures the machine's matrix-multiply peak per dtype at this model's
shapes (``benchmarks/gemm_peak.py``, before and after the steps; the higher is kept) and reports
every row's model FLOP/s (``llmnotes.calc.flops_per_token``, 6N + attention) as a fraction of the
peak of its dtype. ``--bf16`` adds bf16 rows: llmnotes with bf16 weights and fp32 master weights
(``llmnotes.bf16``; the step includes moving gradients to the masters and rounding them back),
and both models under bf16 autocast. Steps are forward + backward; ``--optimizer`` adds the
AdamW update (PyTorch's fused kernel for every row, as ``Trainer`` uses; for bf16-master it
updates the fp32 masters), which makes each row a whole training step.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from llmnotes import GPT, GPTConfig, qkernels
from llmnotes.train.bf16 import MasterWeights
from llmnotes.model import lm_loss
from llmnotes.utils import autocast, pick_device


def adamw(params):
    """The update every row gets with --optimizer: AdamW, PyTorch's fused kernel (as Trainer)."""
    return torch.optim.AdamW(params, lr=1e-5, fused=True)


def step_fn(model, idx, is_hf, dtype, optimizer=False):
    opt = adamw(model.parameters()) if optimizer else None

    def step():
        with autocast(idx.device, dtype):
            logits = model(idx).logits if is_hf else model(idx)
            loss = lm_loss(logits[:, :-1], idx[:, 1:])
        loss.backward()
        if opt is not None:
            opt.step()
        model.zero_grad(set_to_none=True)
    return step


def master_step_fn(model, idx, optimizer=False):
    """bf16 weights, fp32 masters: forward+backward in bf16, gradients into the masters, and
    the masters rounded back into the model (what a Trainer step adds besides the update)."""
    master = MasterWeights(model)
    impl, why = master.choose_attention(idx)  # as Trainer does: fused or explicit, measured
    print(f"bf16-master attention: {impl} ({why})")
    master.to_bf16()
    opt = adamw(master.masters) if optimizer else None

    def step():
        loss = lm_loss(model(idx)[:, :-1].float(), idx[:, 1:])
        loss.backward()
        master.grads_to_masters()
        if opt is not None:
            opt.step()
            opt.zero_grad(set_to_none=True)
        master.masters_to_model()
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
    ap.add_argument("--roofline", action="store_true", help="report each row as a fraction of the GEMM peak")
    ap.add_argument("--bf16", action="store_true", help="add bf16 rows (master weights, autocast)")
    ap.add_argument("--optimizer", action="store_true", help="include the AdamW update in every step")
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
    opt = args.optimizer
    steps = {"llmnotes": step_fn(ours_run, idx, False, dtype, opt),
             "transformers": step_fn(theirs_run, idx, True, dtype, opt)}
    row_dtype = {"llmnotes": "bf16" if dtype else "fp32", "transformers": "bf16" if dtype else "fp32"}
    if args.bf16 and device.type == "cpu":
        import copy

        steps["llmnotes bf16-master"] = master_step_fn(copy.deepcopy(ours), idx, opt)
        steps["llmnotes bf16 autocast"] = step_fn(ours_run, idx, False, torch.bfloat16, opt)
        steps["transformers bf16 autocast"] = step_fn(theirs_run, idx, True, torch.bfloat16, opt)
        row_dtype.update({k: "bf16" for k in steps if "bf16" in k})
    peaks = gemm_peaks(args) if args.roofline else None
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
    if peaks:
        later = gemm_peaks(args)
        peaks = {d: max(peaks[d], later[d]) for d in peaks}
    print(f"device={device} preset={args.preset} batch={args.batch} seq={args.seq} "
          f"compile={args.compile} dtype={dtype or torch.float32} threads={torch.get_num_threads()}")
    if device.type == "cpu":
        print(f"CPU: {qkernels.cpu_line()}; torch {torch.__version__}")
    med = {k: statistics.median(v) for k, v in times.items()}
    if peaks:
        print(roofline_table(med, row_dtype, peaks, ours.config, args))
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


def gemm_peaks(args) -> dict[str, float]:
    """GFLOP/s peak per dtype at this preset's training shapes (benchmarks/gemm_peak.py)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from gemm_peak import peaks

    return {d: r["peak_gflops"] for d, r in peaks(args.preset, args.batch, args.seq, ("fp32", "bf16"), 3).items()}


def roofline_table(med: dict, row_dtype: dict, peaks: dict, config, args) -> str:
    """Markdown: each row's model GFLOP/s as a fraction of its dtype's GEMM peak, with ratios."""
    from llmnotes.calc import flops_per_token

    flops = flops_per_token(config, args.seq) * args.batch * args.seq
    lines = [f"GEMM peak at these shapes: fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s "
             f"(model FLOPs per step {flops / 1e9:.1f} G, forward + backward"
             f"{'; every step also runs the AdamW update' if args.optimizer else ''})", "",
             "| step | ms/step | tokens/s | model GFLOP/s | of its dtype's peak | vs transformers (same dtype) "
             "| vs llmnotes fp32 |", "|---|---:|---:|---:|---:|---:|---:|"]
    hf = {row_dtype[k]: med[k] for k in med if k.startswith("transformers")}
    for name, t in med.items():
        gf = flops / t / 1e9
        vs_hf = hf[row_dtype[name]] / t if row_dtype[name] in hf else float("nan")
        lines.append(f"| {name} | {1e3 * t:,.0f} | {args.batch * args.seq / t:,.0f} | {gf:.0f} | "
                     f"{100 * gf / peaks[row_dtype[name]]:.0f}% | {vs_hf:.2f}x | {med['llmnotes'] / t:.2f}x |")
    return "\n".join(lines)


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
