"""Decode speed: batch-1 greedy tokens/s, llmnotes vs Hugging Face transformers, same weights.

    python benchmarks/decode.py [--preset gpt2 tiny] [--new-tokens 256] [--repeats 3] [--threads 2]
                                [--compile] [--write]

Two presets by default: ``gpt2`` (124M parameters: each decode step is dominated by matrix
multiplies, so any two correct implementations converge to the same speed on a CPU) and ``tiny``
(2.2M: each step is dominated by per-step overhead, where the decode loops differ most).

Peers, run interleaved in one process (repeat 1 of every peer, then repeat 2, ...; the median
per peer is reported, so load from other jobs hits every peer alike):

* ``llmnotes``: ``llmnotes.sampling.generate(temperature=0)`` (static pre-allocated KV cache),
  on the model as constructed (row-major ``nn.Linear`` weights).
* ``llmnotes prepare_for_decode``: the same call on a copy after ``model.prepare_for_decode()``,
  which stores the wide weight matrices column-major, the order CPU matrix-vector kernels read
  fastest (same values; tokens asserted equal). The speculative and compile rows use this copy.
* ``hf dynamic``: ``GPT2LMHeadModel.generate(do_sample=False)`` with its default DynamicCache,
  loaded from the directory ``model.save_pretrained`` wrote (identical weights).
* ``--compile`` adds ``llmnotes compile`` (``generate(compile=True)``) and ``hf static+compile``
  (``cache_implementation="static"`` with the forward under ``torch.compile``). Compilation time
  is excluded: each is warmed up once before timing.
* ``llmnotes speculative``: ``speculative_generate`` with an *early-exit* draft: the target's own first
  ``--draft-layers`` blocks plus its final LayerNorm and head (the idea of LayerSkip, Elhoushi et
  al. 2024, arXiv:2404.16710). It needs no second model, and with random weights this is the only
  kind of draft that agrees with the target often enough to measure anything.

Every peer must produce the same tokens as ``llmnotes`` (asserted), so the comparison is like for
like. Random weights (``GPTConfig.from_preset(preset)``): speed does not depend on their values,
only the speculative acceptance rate does, and that is printed with it. ``--write`` replaces this
benchmark's section of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmnotes import GPT, GPTConfig  # noqa: E402
from llmnotes.sampling import generate  # noqa: E402
from llmnotes.speculative import early_exit_draft, speculative_generate  # noqa: E402
from llmnotes.utils import atomic_write_text  # noqa: E402

RESULTS = Path(__file__).parent / "RESULTS.md"


def bench_preset(preset: str, args, device: torch.device) -> list[str]:
    """Time every peer on one preset; return the Markdown lines of its table."""
    from transformers import GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT(GPTConfig.from_preset(preset)).to(device).eval()
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        hf = GPT2LMHeadModel.from_pretrained(tmp).to(device).eval()
    idx = torch.randint(0, model.config.vocab_size, (1, args.prompt_tokens), device=device)
    mask = torch.ones_like(idx)
    n = min(args.new_tokens, model.config.block_size - args.prompt_tokens)
    hf_kw = dict(attention_mask=mask, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                 pad_token_id=0)
    fast = copy.deepcopy(model).prepare_for_decode()
    draft_layers = min(args.draft_layers, model.config.n_layer - 1)
    draft = early_exit_draft(fast, draft_layers)
    stats = {}

    def spec():
        out, s = speculative_generate(fast, draft, idx, n, num_draft=args.num_draft, temperature=0,
                                      return_stats=True)
        stats["spec"] = s
        return out

    peers = {
        "llmnotes": lambda: generate(model, idx, n, temperature=0),
        "llmnotes prepare_for_decode": lambda: generate(fast, idx, n, temperature=0),
        "hf dynamic": lambda: hf.generate(idx, **hf_kw),
        "llmnotes speculative": spec,
    }
    if args.compile:
        # A second copy, so that "hf dynamic" above keeps running the plain eager forward.
        hf_compiled = copy.deepcopy(hf)
        hf_compiled.forward = torch.compile(hf_compiled.forward)
        peers["llmnotes compile"] = lambda: generate(fast, idx, n, temperature=0, compile=True)
        peers["hf static+compile"] = lambda: hf_compiled.generate(idx, cache_implementation="static", **hf_kw)

    failed = []
    with torch.no_grad():
        reference = peers["llmnotes"]()
        for name, fn in list(peers.items()):  # warm-up (and compilation) + correctness
            t0 = time.perf_counter()
            try:
                out = fn()
            except Exception as err:  # a compile path that does not run here is reported, not fatal
                if "compile" not in name:
                    raise
                failed.append(f"{name}: did not run ({type(err).__name__}: {str(err).splitlines()[0][:120]})")
                del peers[name]
                continue
            print(f"[{preset}] warm-up {name}: {time.perf_counter() - t0:.1f}s", flush=True)
            if not torch.equal(out, reference):
                raise SystemExit(f"{name} produced different tokens from llmnotes")
        times: dict[str, list[float]] = {name: [] for name in peers}
        for r in range(args.repeats):
            for name, fn in peers.items():
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
                print(f"[{preset}] repeat {r} {name}: {n / times[name][-1]:.1f} tok/s", flush=True)

    base = n / statistics.median(times["hf dynamic"])
    s = stats["spec"]
    lines = [
        f"**`{preset}` preset** ({model.num_params():,} parameters, {model.config.n_layer} layers, "
        f"vocabulary {model.config.vocab_size}), {n} new tokens:",
        "",
        "| decoder | seconds | tokens/s | vs HF dynamic cache |",
        "|---|---:|---:|---:|",
    ]
    for name in peers:
        med = statistics.median(times[name])
        lines.append(f"| {name} | {med:.2f} | {n / med:.1f} | {n / med / base:.2f}x |")
    lines += ["", f"Speculative: early-exit draft = the first {draft_layers} of {model.config.n_layer} blocks, "
              f"{args.num_draft} proposals per round; acceptance rate {s.acceptance_rate:.2f}, "
              f"{s.tokens_per_round:.2f} tokens per target pass ({s.rounds} target passes for "
              f"{s.emitted} tokens).", ""] + [f"- {f}" for f in failed] + ([""] if failed else [])
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", nargs="+", default=["gpt2", "tiny"])
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--prompt-tokens", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--draft-layers", type=int, default=2)
    ap.add_argument("--num-draft", type=int, default=4)
    ap.add_argument("--compile", action="store_true", help="also time the torch.compile paths")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    tables = []
    for preset in args.preset:
        tables += bench_preset(preset, args, device)
    machine = (f"{platform.machine()}, {torch.get_num_threads()} thread(s), "
               f"{'GPU ' + torch.cuda.get_device_name() if device.type == 'cuda' else 'CPU, no GPU'}")
    cmd = "python " + " ".join(["benchmarks/decode.py"] + sys.argv[1:])
    lines = [
        f"Command: `{cmd}`. Machine: {machine}, torch {torch.__version__}, shared with other jobs "
        "(compare rows of one table, not across runs). Random weights, batch 1, "
        f"{args.prompt_tokens}-token prompt, greedy; every peer's tokens equal llmnotes' (asserted); "
        f"median of {args.repeats} interleaved repeats.",
        "",
    ] + tables
    print("\n".join(lines))
    if args.write:  # one block per (presets, compile) combination, replaced when re-run
        tag = "decode:" + "+".join(args.preset) + (":compile" if args.compile else "")
        title = f"## Decoding (`benchmarks/decode.py`): {', '.join(args.preset)}" + (
            ", with torch.compile" if args.compile else "")
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
