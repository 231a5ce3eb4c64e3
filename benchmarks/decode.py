"""Decode speed: batch-1 greedy tokens/s, llmnotes vs Hugging Face and llama.cpp, same weights.

    python benchmarks/decode.py [--preset gpt2 tiny] [--new-tokens 256] [--repeats 3] [--threads 1 2]
                                [--peers ...] [--compile] [--kernels] [--write]

Peers, run interleaved in one process for each thread count (repeat 1 of every peer, then
repeat 2, ...; the median per peer is reported, so load from other jobs hits every peer alike):

* ``llmnotes``: ``llmnotes.sampling.generate(temperature=0)`` on the model as constructed.
* ``llmnotes prepare_for_decode``: the same after ``fast_linear.prepare_for_decode``, which
  measures plain / column-major / split-K / oneDNN-packed / llmnotes' own kernel per weight
  shape on this CPU and keeps plain unless another path is clearly faster, then keeps the fused
  one-call decode step (``llmnotes/fused.py``) if it measures faster; the tables under it say
  what was chosen and why (timings).
* ``llmnotes bf16``: the model cast to bfloat16 (weights and activations), then prepared.
* ``llmnotes int8``: ``quantize_model(model, "int8")``: int8 block layers, float32 output layer
  (tied to the embedding, so left as it is). Every quantized peer is then prepared with
  ``prepare_for_decode``, which picks per weight shape among the readable path, PyTorch's kernel
  (FBGEMM for int8, ``_weight_int4pack_mm_for_cpu`` for 4-bit; ``llmnotes/qkernels.py``) and
  llmnotes' own (``llmnotes/native.py``), and the table under it says which and why.
* ``llmnotes int8+emb``: ``quantize_model(model, "int8", embeddings=True)``: the embedding and
  the tied output layer are int8 as well, like llama.cpp's Q8_0 file.
* ``llmnotes int4+emb``: 4-bit blocks of 32, symmetric (Q4_0's format), int8 embedding/output.
* ``hf dynamic``: ``GPT2LMHeadModel.generate(do_sample=False)`` (DynamicCache), same weights.
* ``llama.cpp F32/BF16/Q8_0/Q4_0``: llama-cpp-python on the GGUF files ``export_gguf`` writes from
  the same model, greedy via its logits (skipped, with a message, when not installed).
* ``--compile`` adds ``llmnotes compile`` and ``hf static+compile``; ``--peers`` can add
  ``llmnotes speculative`` (early-exit draft: the target's first ``--draft-layers`` blocks).

The float peers (llmnotes, prepared, HF, llama.cpp F32) are asserted to produce llmnotes'
tokens; quantized and bf16 peers report the share of tokens equal to it instead (rounding
changes random-weight logits' near ties). ``--kernels`` first times the candidate CPU kernels
for the model's weight shapes. ``--write`` replaces this benchmark's section of
``benchmarks/RESULTS.md`` (what pages quote, through ``llmnotes.recorded``) and writes
``benchmarks/decode_cpu.json`` (the same results, machine-readable).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmnotes import GPT, GPTConfig, fast_linear, fused, native, qkernels  # noqa: E402
from llmnotes.quantize import export_gguf, quantize_model  # noqa: E402
from llmnotes.sampling import generate  # noqa: E402
from llmnotes.sampling import early_exit_draft, speculative_generate  # noqa: E402
from llmnotes.utils import atomic_write_text  # noqa: E402

RESULTS = Path(__file__).parent / "RESULTS.md"
PAUSE_S = 0.5  # between timed peers: longer than OpenMP's spin-wait (GOMP_SPINCOUNT, KMP_BLOCKTIME 200 ms)
JSON = Path(__file__).parent / "decode_cpu.json"
DEFAULT_PEERS = ["llmnotes", "llmnotes prepare_for_decode", "llmnotes bf16", "llmnotes int8",
                 "llmnotes int8+emb", "llmnotes int4+emb", "hf dynamic",
                 "llama.cpp F32", "llama.cpp BF16", "llama.cpp Q8_0", "llama.cpp Q4_0"]
FLOAT_PEERS = {"llmnotes", "llmnotes prepare_for_decode", "hf dynamic", "llama.cpp F32",
               "llmnotes speculative", "llmnotes compile", "hf static+compile"}
LLAMA_PAIR = {"llmnotes": "llama.cpp F32", "llmnotes prepare_for_decode": "llama.cpp F32",
              "llmnotes bf16": "llama.cpp BF16", "llmnotes int8": "llama.cpp Q8_0", "llmnotes int8+emb": "llama.cpp Q8_0",
              "llmnotes int4+emb": "llama.cpp Q4_0"}


# ---------------------------------------------------------------------------------------------
# llama.cpp peer
# ---------------------------------------------------------------------------------------------


def llama_cpp_decoder(path: Path, threads: int, n_ctx: int):
    """A function (prompt ids (1, T), n) -> ids (1, T + n): llama.cpp greedy decoding of ``path``."""
    import numpy as np
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                logits_all=False, verbose=False)

    def run(idx: torch.Tensor, n: int) -> torch.Tensor:
        llm.reset()
        llm.eval(idx[0].tolist())
        out = []
        for _ in range(n):
            logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))
            out.append(int(logits.argmax()))
            llm.eval([out[-1]])
        return torch.cat([idx, torch.tensor([out])], dim=1)

    return run


def llama_cpp_missing() -> str | None:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return ("llama.cpp rows skipped: llama-cpp-python is not installed (optional; "
                "`pip install llama-cpp-python` builds it from source)")
    return None


# ---------------------------------------------------------------------------------------------
# Kernel candidates for one weight shape
# ---------------------------------------------------------------------------------------------


def kernel_rows(shapes: list[tuple[int, int]], rounds: int = 5) -> list[str]:
    """Median ms of one batch-1 product per candidate kernel and shape, interleaved (one weight,
    so from cache where it fits: prepare_for_decode measures from memory for big models)."""
    from llmnotes.quantize import QuantizedLinear

    kernels, bf16_gemv = native.kernels(), native.bf16_kernel()
    heads = ["fp32 row-major", "fp32 column-major", "fp32 native", "bf16", "bf16 native", "int8 FBGEMM", "int8 native",
             "int8 `_weight_int8pack_mm`", "int4 (bf16 act.)", "int4 native"]
    lines = ["| weight (out x in) | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(heads)]
    for out_f, in_f in shapes:
        w = torch.randn(out_f, in_f) * 0.02
        x = torch.randn(1, in_f)
        col, wb, xb = w.t().contiguous().t(), w.bfloat16(), x.bfloat16()
        q8 = QuantizedLinear.from_linear(torch.nn.Linear(in_f, out_f, bias=False).requires_grad_(False), 8)
        s8 = q8.scale.float().flatten()
        q4 = QuantizedLinear.from_linear(torch.nn.Linear(in_f, out_f, bias=False), 4, 32, symmetric=True)
        cands = {"row": lambda: F.linear(x, w), "col": lambda: F.linear(x, col),
                 "f32n": (lambda: kernels.gemv_f32(x.view(-1), w, None)) if kernels else None,
                 "bf16": lambda: F.linear(xb, wb),
                 "bf16n": (lambda: bf16_gemv(xb.view(-1), wb, None)) if bf16_gemv else None,
                 "int8": lambda: q8._packed("int8")(x),
                 "int8n": (lambda: q8._packed("int8-native")(x)) if kernels else None,
                 "int8pack": lambda: torch.ops.aten._weight_int8pack_mm(x, q8.qweight, s8),
                 "int4": lambda: q4._packed("int4")(x),
                 "int4n": (lambda: q4._packed("int4-native")(x)) if kernels and in_f % 64 == 0 else None}
        times = {k: [] for k, fn in cands.items() if fn is not None}
        with torch.no_grad():
            for k in times:
                cands[k]()
            for _ in range(rounds):
                for k in times:
                    t0 = time.perf_counter()
                    cands[k]()
                    times[k].append(1e3 * (time.perf_counter() - t0))
        m = {k: statistics.median(v) for k, v in times.items()}
        lines.append(f"| {out_f} x {in_f} | " + " | ".join(f"{m[k]:.3f}" if k in m else "n/a" for k in cands) + " |")
    return lines


# ---------------------------------------------------------------------------------------------
# One preset at one thread count
# ---------------------------------------------------------------------------------------------


def build_peers(model, hf, idx, n, names, ggufs, threads, args):
    """name -> zero-argument callable returning the generated ids; plus extra info."""
    peers, info = {}, {}

    def gen(m):
        return lambda: generate(m, idx, n, temperature=0)

    for name in names:
        if name == "llmnotes":
            peers[name] = gen(model)
        elif name == "llmnotes prepare_for_decode":
            fast = fast_linear.prepare_for_decode(copy.deepcopy(model))
            info["plan"] = fast_linear.decode_plan(fast)
            info.setdefault("fused", {})[name] = fused.status(fast)
            peers[name] = gen(fast)
        elif name == "llmnotes bf16":
            bf = fast_linear.prepare_for_decode(copy.deepcopy(model).to(torch.bfloat16))
            info["plan_bf16"] = fast_linear.decode_plan(bf)
            info.setdefault("fused", {})[name] = fused.status(bf)
            peers[name] = gen(bf)
        elif name in ("llmnotes int8", "llmnotes int8+emb", "llmnotes int4+emb"):
            method = "int4" if "int4" in name else "int8"
            kw = {"group_size": 32, "symmetric": True} if method == "int4" else {}
            q = quantize_model(copy.deepcopy(model), method, embeddings="+emb" in name, **kw)
            fast_linear.prepare_for_decode(q)
            plan = fast_linear.decode_plan(q)
            info.setdefault("plan_quantized", {})[name] = [p for p in plan if p["dtype"].startswith("int")]
            info.setdefault("fused", {})[name] = fused.status(q)
            peers[name] = gen(q)
        elif name == "hf dynamic":
            hf_kw = dict(attention_mask=torch.ones_like(idx), max_new_tokens=n, min_new_tokens=n,
                         do_sample=False, pad_token_id=0)
            peers[name] = lambda: hf.generate(idx, **hf_kw)
        elif name.startswith("llama.cpp"):
            if ggufs is None:
                continue
            run = llama_cpp_decoder(ggufs[name.split()[-1]], threads, model.config.block_size)
            peers[name] = lambda run=run: run(idx, n)
        elif name == "llmnotes speculative":
            fast = fast_linear.prepare_for_decode(copy.deepcopy(model))
            draft = early_exit_draft(fast, min(args.draft_layers, model.config.n_layer - 1))
            peers[name] = lambda: speculative_generate(fast, draft, idx, n, num_draft=args.num_draft, temperature=0)
        else:
            raise SystemExit(f"unknown peer {name!r}; choose from {DEFAULT_PEERS + ['llmnotes speculative']}")
    if args.compile:
        fast = fast_linear.prepare_for_decode(copy.deepcopy(model))
        hf_c = copy.deepcopy(hf)
        hf_c.forward = torch.compile(hf_c.forward)
        hf_kw = dict(attention_mask=torch.ones_like(idx), max_new_tokens=n, min_new_tokens=n,
                     do_sample=False, pad_token_id=0, cache_implementation="static")
        peers["llmnotes compile"] = lambda: generate(fast, idx, n, temperature=0, compile=True)
        peers["hf static+compile"] = lambda: hf_c.generate(idx, **hf_kw)
    return peers, info


def time_peers(peers, repeats, label):
    """Warm up every peer (returning its tokens), then time ``repeats`` interleaved rounds."""
    outputs, times = {}, {name: [] for name in peers}
    for name, fn in peers.items():
        t0 = time.perf_counter()
        outputs[name] = fn()
        print(f"[{label}] warm-up {name}: {time.perf_counter() - t0:.1f}s", flush=True)
    for r in range(repeats):
        for name, fn in peers.items():
            # PyTorch and llama.cpp each keep an OpenMP thread pool in this process, whose idle
            # threads spin for a while after their work: pause so the previous peer's spinning
            # threads are asleep before this peer is timed (on 2 cores they would share its CPUs).
            time.sleep(PAUSE_S)
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
            print(f"[{label}] repeat {r} {name}: {time.perf_counter() - t0:.2f}s", flush=True)
    return outputs, times


def same_share(out: torch.Tensor, ref: torch.Tensor, prompt: int) -> float:
    """Share of generated tokens equal to the reference's, position by position."""
    return (out[:, prompt:] == ref[:, prompt:]).float().mean().item()


def bench(preset: str, threads: int, args, ggufs, model, hf, idx, n) -> dict:
    """Time every peer on one preset with ``threads`` threads; return its rows and plan."""
    torch.set_num_threads(threads)
    label = f"{preset}, {threads} thread(s)"
    peers, info = build_peers(model, hf, idx, n, args.peers, ggufs, threads, args)
    with torch.no_grad():
        outputs, times = time_peers(peers, args.repeats, label)
    ref = outputs["llmnotes"]
    rows = []
    for name in peers:
        share = same_share(outputs[name], ref, idx.shape[1])
        if name in FLOAT_PEERS and share < 1.0:
            print(f"WARNING [{label}] {name}: only {share:.0%} of tokens equal llmnotes' fp32 tokens")
        med = statistics.median(times[name])
        rows.append({"decoder": name, "seconds": med, "tokens_per_s": n / med,
                     "best_tokens_per_s": n / min(times[name]), "same_tokens": share})
    by = {r["decoder"]: r["tokens_per_s"] for r in rows}
    best = {r["decoder"]: r["best_tokens_per_s"] for r in rows}
    for r in rows:
        r["vs_llmnotes_fp32"] = r["tokens_per_s"] / by["llmnotes"]
        r["vs_hf"] = r["tokens_per_s"] / by["hf dynamic"] if "hf dynamic" in by else None
        pair = LLAMA_PAIR.get(r["decoder"])
        r["vs_llamacpp"] = r["tokens_per_s"] / by[pair] if pair in by else None
        r["vs_llamacpp_best"] = r["best_tokens_per_s"] / best[pair] if pair in best else None
        r["llamacpp_peer"] = pair if pair in by else None
    return {"preset": preset, "threads": threads, "new_tokens": n, "rows": rows, **info}


def table(result: dict) -> list[str]:
    """Markdown lines for one ``bench`` result."""
    def ratio(v):
        return "" if v is None else f"{v:.2f}x"

    lines = [f"**{result['threads']} thread(s)**, {result['new_tokens']} new tokens:", "",
             "| decoder | tokens/s | best repeat | vs llmnotes fp32 | vs HF | vs llama.cpp (same precision) "
             "| vs llama.cpp, best repeats | tokens = fp32 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        peer = f" ({r['llamacpp_peer'].split()[-1]})" if r["llamacpp_peer"] else ""
        lines.append(f"| {r['decoder']} | {r['tokens_per_s']:.1f} | {r['best_tokens_per_s']:.1f} | "
                     f"{ratio(r['vs_llmnotes_fp32'])} | {ratio(r['vs_hf'])} | {ratio(r['vs_llamacpp'])}{peer} | "
                     f"{ratio(r.get('vs_llamacpp_best'))} | {100 * r['same_tokens']:.0f}% |")
    if result.get("fused"):
        lines += ["", f"Fused decode step (`llmnotes.fused`, {result['threads']} thread(s)), as "
                  "`prepare_for_decode` decided by timing a few decode steps both ways (against the per-shape "
                  "winners in Python where one of those is a layout the fused call cannot read):", ""]
        lines += [f"- {name}: {status}" for name, status in result["fused"].items()]
    for key, title in (("plan", "fp32"), ("plan_bf16", "bf16")):
        if result.get(key):
            lines += ["", f"`prepare_for_decode` ({title}, {result['threads']} thread(s)): path chosen per "
                      "weight shape, from median ms of one matrix-vector product per candidate, measured at "
                      "prepare time (another path must beat plain by 5%); last column: the product for "
                      f"prompts and small batches on llmnotes' layers, from {fast_linear.ROWS_PROBE} rows, "
                      "`F.linear` (torch) vs `gemm_f32_rows` (native), median ms:", "",
                      "| weight (out, in) | layers | chosen | " + " | ".join(fast_linear.PATHS) + " | prompt rows |",
                      "|---|---:|---|" + "---:|" * len(fast_linear.PATHS) + "---|"]
            for p in result[key]:
                ms = " | ".join(f"{p['ms'][k]:.3f}" if k in p["ms"] else "n/a" for k in fast_linear.PATHS)
                chosen = p["path"] + (f" (fused step; {p['fastest_alone']} alone)" if "fastest_alone" in p else "")
                rows = p.get("rows")
                prompt = (f"{rows[0]} ({', '.join(f'{k} {v:.2f}' for k, v in rows[1].items())})"
                          if rows and rows[1] else (rows[0] if rows else "n/a"))
                lines.append(f"| {p['shape'][0]} x {p['shape'][1]} | {p['layers']} | {chosen} | {ms} | {prompt} |")
    for name, plan in result.get("plan_quantized", {}).items():
        names = sorted({k for p in plan for k in p["ms"]}, key=lambda k: (k != "readable", k))
        lines += ["", f"`{name}` after `prepare_for_decode` ({result['threads']} thread(s)): kernel chosen per "
                  "quantized weight shape, median ms of one product per candidate (a kernel must beat the "
                  "readable dequantize-then-matmul path by 5%):", "",
                  "| weight (out, in) | format | layers | chosen | " + " | ".join(names) + " |",
                  "|---|---|---:|---|" + "---:|" * len(names)]
        for p in plan:
            ms = " | ".join(f"{p['ms'][k]:.3f}" if k in p["ms"] else "n/a" for k in names)
            lines.append(f"| {p['shape'][0]} x {p['shape'][1]} | {p['dtype']} | {p['layers']} | {p['path']} | {ms} |")
    return lines + [""]


def run_preset(preset: str, args, notes: list[str]) -> tuple[list[str], list[dict]]:
    from transformers import GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT(GPTConfig.from_preset(preset)).eval()
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        hf = GPT2LMHeadModel.from_pretrained(tmp).eval()
        idx = torch.randint(0, model.config.vocab_size, (1, args.prompt_tokens))
        n = min(args.new_tokens, model.config.block_size - args.prompt_tokens)
        ggufs = None
        if any(p.startswith("llama.cpp") for p in args.peers) and not llama_cpp_missing():
            from llmnotes.tokenizer import BPETokenizer
            from llmnotes.pretrained import pretrained_dir

            tok = BPETokenizer.from_pretrained(pretrained_dir("tiny"))
            ggufs = {q: export_gguf(model, tok, Path(tmp) / f"m-{q}.gguf", q) for q in ("F32", "BF16", "Q8_0", "Q4_0")}
        lines = [f"### `{preset}` preset ({model.num_params():,} parameters, {model.config.n_layer} layers, "
                 f"vocabulary {model.config.vocab_size})", ""]
        if args.kernels:
            shapes = sorted({tuple(m.weight.shape) for m in model.modules() if isinstance(m, torch.nn.Linear)})
            torch.set_num_threads(args.threads[0])
            lines += [f"Kernel candidates, one product with a batch of 1, median ms, {args.threads[0]} thread(s):", ""]
            lines += kernel_rows(shapes) + [""]
        results = [bench(preset, t, args, ggufs, model, hf, idx, n) for t in args.threads]
    for r in results:
        lines += table(r)
    return lines, results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", nargs="+", default=["gpt2", "tiny"])
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--prompt-tokens", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--peers", nargs="+", default=DEFAULT_PEERS)
    ap.add_argument("--draft-layers", type=int, default=2)
    ap.add_argument("--num-draft", type=int, default=4)
    ap.add_argument("--compile", action="store_true", help="also time the torch.compile paths")
    ap.add_argument("--kernels", action="store_true", help="first time the candidate kernels per weight shape")
    ap.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md and decode_cpu.json")
    args = ap.parse_args()
    if "llmnotes" not in args.peers:
        args.peers = ["llmnotes"] + args.peers  # the reference every row is compared with
    warnings.filterwarnings("ignore", message=".*quantized tensor creation.*|.*quantize_per_tensor.*")
    notes = [m for m in [llama_cpp_missing()] if m and any(p.startswith("llama.cpp") for p in args.peers)]
    if native.kernels() is None:
        notes.append(f"llmnotes' own kernels (llmnotes.native) are unavailable: {native.unavailable()}")
    for m in notes:
        print(m)
    tables, results = [], []
    for preset in args.preset:
        lines, res = run_preset(preset, args, notes)
        tables += lines
        results += res
    date = datetime.date.today().isoformat()
    cmd = "python " + " ".join(["benchmarks/decode.py"] + sys.argv[1:])
    machine = qkernels.cpu_line().split(", ", 1)
    header = [f"Command: `{cmd}`. CPU: {machine[0]} ({machine[1].split('; ', 1)[1]}), no GPU; "
              f"torch {torch.__version__}; {date}. Random weights, batch 1, {args.prompt_tokens}-token prompt, "
              f"greedy; median of {args.repeats} interleaved repeats.", ""] + [f"- {m}" for m in notes] + ([""] if notes else [])
    print("\n".join(header + tables))
    if args.write:
        write_results(args, header + tables, {"command": cmd, "cpu": machine[0], "date": date,
                                              "cpu_flags": machine[1].split("; ", 1)[1],
                                              "torch": torch.__version__, "results": results})
    return 0


def write_results(args, lines: list[str], record: dict) -> None:
    """Replace this benchmark's block in RESULTS.md; write the JSON record pages read."""
    tag = "decode-cpu:" + "+".join(args.preset) + (":compile" if args.compile else "")
    title = f"## Decoding on CPU (`benchmarks/decode.py`): {', '.join(args.preset)}"
    begin, end = f"<!-- {tag}:begin -->", f"<!-- {tag}:end -->"
    block = "\n".join([begin, title, ""] + lines + [end]) + "\n"
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n"
    if begin in text:
        before, rest = text.split(begin, 1)
        after = rest.split(end, 1)[1].lstrip("\n")
        text = before + block + ("\n" + after if after else "")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    atomic_write_text(RESULTS, text)
    atomic_write_text(JSON, json.dumps(record, indent=1, default=str) + "\n")


if __name__ == "__main__":
    sys.exit(main())
