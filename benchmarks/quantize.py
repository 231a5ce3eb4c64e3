"""Quantization quality vs size on the shipped tiny model, and GPTQ's running time on GPT-2 small.

    python benchmarks/quantize.py                      # the table (tiny model, validation text)
    python benchmarks/quantize.py --gptq-timing gpt2   # + GPTQ wall time on the gpt2 preset

The table: perplexity of the shipped model on the shipped validation text (``val`` split, the
first ``--tokens`` tokens, windows of 256) and the model's bytes, for fp32, bf16, int8, int4
(groups of ``--group-size``), nf4, llm.int8 and gptq-4bit (same groups as int4). The tiny model's
matrices are 192 or 768 columns wide, so the usual group of 128 does not divide 192: 64 is used.
Calibration (llm.int8, GPTQ) uses 16 sequences of 256 tokens of the *training* split.

GPTQ timing uses a randomly initialised ``gpt2`` preset (124M parameters, 48 linear layers
quantized): round-to-nearest for the whole model, the GPTQ solver alone over all 48 layers
(Hessians from 2,048 random inputs each), and GPTQ end to end including the block-by-block
calibration forward passes (``--calib-seqs`` × 256 random tokens). The time depends on the
shapes, not on the weights' values.
"""

from __future__ import annotations

import argparse
import copy
import platform
import time

import torch

from llmnotes.quantize import format_table, quality_table, quantize_model
from llmnotes.cli.quantize import load_for_quantize


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model directory (default: the shipped tiny model)")
    ap.add_argument("--tokens", type=int, default=20000)
    ap.add_argument("--group-size", type=int, default=64)
    ap.add_argument("--gptq-timing", default=None, help="also time GPTQ on this preset (e.g. gpt2)")
    ap.add_argument("--no-table", action="store_true", help="only the GPTQ timing")
    ap.add_argument("--calib-seqs", type=int, default=4, help="calibration sequences for the end-to-end timing")
    args = ap.parse_args()
    torch.manual_seed(0)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}")

    if not args.no_table:
        model, val, calib = load_for_quantize(args.model, args.tokens)
        t0 = time.perf_counter()
        rows = quality_table(model, val, calib, group_size=args.group_size)
        print(f"\n{val.numel() - 1:,} validation tokens, group size {args.group_size} ({time.perf_counter() - t0:.0f} s)\n")
        print(format_table(rows))

    if args.gptq_timing:
        from llmnotes import GPT, GPTConfig
        from llmnotes.quantize import gptq_quantize_weight
        from llmnotes.quantize import linear_layers

        big = GPT(GPTConfig.from_preset(args.gptq_timing)).eval()
        layers = linear_layers(big)
        print(f"\n{args.gptq_timing}: {big.num_params():,} parameters, {len(layers)} linear layers quantized, 4-bit g128")
        t0 = time.perf_counter()
        quantize_model(copy.deepcopy(big), "int4", group_size=128)
        print(f"  round to nearest, whole model          {time.perf_counter() - t0:7.1f} s")
        # The GPTQ solver alone (what the paper times): one Hessian per layer from 2,048 inputs.
        solve = 0.0
        for _, lin in layers:
            X = torch.randn(2048, lin.in_features)
            H = 2 * X.T @ X / X.shape[0]
            t0 = time.perf_counter()
            gptq_quantize_weight(lin.weight, H, bits=4, group_size=128)
            solve += time.perf_counter() - t0
        print(f"  GPTQ solver, all layers                {solve:7.1f} s")
        ids = torch.randint(0, big.config.vocab_size, (args.calib_seqs, 256))
        t0 = time.perf_counter()
        quantize_model(copy.deepcopy(big), "gptq", group_size=128, calibration=ids)
        print(f"  GPTQ end to end ({args.calib_seqs}x256 calibration tokens, "
              f"block by block)  {time.perf_counter() - t0:7.1f} s")


if __name__ == "__main__":
    main()
