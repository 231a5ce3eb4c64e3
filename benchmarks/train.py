"""Training throughput: llmnotes' Trainer vs a bare hand-written loop vs Hugging Face GPT-2.

All three train the same architecture (GPT-2 layout, the ``tiny`` preset by default) with the
same AdamW settings, batch and sequence length, on the shipped corpus:

- ``trainer``: ``llmnotes.train.Trainer.fit()`` (sampler, schedule, clipping, NaN check, metrics);
- ``bare``: the loop written out by hand around the same ``llmnotes.model.GPT``;
- ``hf``: the same hand-written loop around ``transformers.GPT2LMHeadModel`` (SDPA attention).

The three are timed in interleaved rounds (A B C A B C ...) so that a change in machine load
hits all of them alike; the median tokens/s of the rounds is reported. Usage::

    python benchmarks/train.py [--preset tiny] [--batch-size 4] [--block-size 128] [--steps 8] [--rounds 3]
    OMP_NUM_THREADS=1 python benchmarks/train.py --clock cpu    # CPU seconds: robust on a shared machine
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from llmnotes.data import TokenDataset, load_tokens
from llmnotes.model import GPT, GPTConfig
from llmnotes.train import EpochSampler, Trainer, TrainConfig, lr_at, param_groups


def hf_model(cfg: GPTConfig):
    from transformers import GPT2Config, GPT2LMHeadModel

    hf_cfg = GPT2Config(vocab_size=cfg.vocab_size, n_positions=cfg.block_size, n_embd=cfg.n_embd,
                        n_layer=cfg.n_layer, n_head=cfg.n_head, resid_pdrop=0.0, embd_pdrop=0.0,
                        attn_pdrop=0.0, activation_function="gelu_new",
                        bos_token_id=cfg.vocab_size - 1, eos_token_id=cfg.vocab_size - 1)
    return GPT2LMHeadModel(hf_cfg, attn_implementation="sdpa") if _accepts_attn() else GPT2LMHeadModel(hf_cfg)


def _accepts_attn() -> bool:
    import inspect

    from transformers import PreTrainedModel

    return "attn_implementation" in inspect.signature(PreTrainedModel.__init__).parameters


class BareLoop:
    """The loop by hand: sample, forward, loss, backward, clip, step, schedule."""

    def __init__(self, model, data, tc: TrainConfig, hf: bool = False):
        self.model, self.data, self.tc, self.hf = model, data, tc, hf
        self.opt = torch.optim.AdamW(param_groups(model, tc.weight_decay), lr=tc.lr, betas=tc.betas)
        self.sampler = EpochSampler(len(data), tc.seed)
        self.step = 0

    def run(self, steps: int) -> None:
        tc = self.tc
        for _ in range(steps):
            for g in self.opt.param_groups:
                g["lr"] = lr_at(self.step, tc.lr, tc.min_lr, tc.warmup_steps, tc.lr_decay_steps)
            x, y = map(torch.stack, zip(*(self.data[i] for i in self.sampler.take(tc.batch_size))))
            logits = self.model(input_ids=x).logits if self.hf else self.model(x)
            loss = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc.grad_clip)
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
            loss.item()  # the Trainer reads every step's loss (NaN check, logging); so does this
            self.step += 1


class TrainerRunner:
    def __init__(self, model, data, tc: TrainConfig):
        self.trainer = Trainer(model, data, None, tc)

    def run(self, steps: int) -> None:
        self.trainer.config.max_steps = self.trainer.step + steps
        self.trainer.fit()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--block-size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=8, help="timed steps per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: time.process_time(), this process's CPU seconds; on a machine shared "
                         "with other jobs it measures the work done, not the share of the CPU received "
                         "(use with OMP_NUM_THREADS=1)")
    args = ap.parse_args()
    clock = time.perf_counter if args.clock == "wall" else time.process_time

    cfg = GPTConfig.from_preset(args.preset, block_size=args.block_size)
    data = TokenDataset(load_tokens("train"), args.block_size)
    tc = TrainConfig(max_steps=10_000, batch_size=args.batch_size, lr=1e-3, warmup_steps=10,
                     log_interval=10_000, eval_interval=0, progress=False, device="cpu")
    torch.manual_seed(0)
    runners = {
        "trainer": TrainerRunner(GPT(cfg), data, tc),
        "bare": BareLoop(GPT(cfg), data, tc),
        "hf": BareLoop(hf_model(cfg).train(), data, tc, hf=True),
    }
    for r in runners.values():
        r.run(args.warmup)
    rates: dict[str, list[float]] = {k: [] for k in runners}
    tokens = args.steps * args.batch_size * args.block_size
    for _ in range(args.rounds):
        for name, r in runners.items():
            t0 = clock()
            r.run(args.steps)
            rates[name].append(tokens / (clock() - t0))
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"preset={args.preset} block_size={args.block_size} batch={args.batch_size} "
          f"steps/round={args.steps} rounds={args.rounds} threads={torch.get_num_threads()} clock={args.clock}")
    print(f"{'loop':<10}{'median tok/s':>14}{'rounds':>32}{'vs bare':>10}")
    for k in runners:
        rounds = " ".join(f"{x:,.0f}" for x in rates[k])
        print(f"{k:<10}{med[k]:>14,.0f}{rounds:>32}{med[k] / med['bare']:>10.3f}")
    overhead = 1 - med["trainer"] / med["bare"]
    print(f"Trainer overhead vs bare loop: {overhead:+.1%}")


if __name__ == "__main__":
    main()
