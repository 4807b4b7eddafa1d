"""Activation checkpointing's memory saved against time added, and bf16 against fp32 step time (chapter 11, issue 18).

Model: the course GPT (``course_utils.model.gpt``, dropout 0, vocabulary 65), ``--n-layer`` blocks of width
``--n-embd``; random token ids from a seeded generator (neither memory nor time depends on the tokens).

* Checkpointing, for each sequence length in ``--seq-lens`` at batch ``--batch``: the bytes autograd saves for
  backward, plain and with every block checkpointed (``course_utils.parallel.checkpointing.checkpoint_costs``,
  counted with ``SavedTensorMeter``: exact, machine-independent), and the median time of a forward+backward pass of
  each arm over ``--repeats`` rounds, the arms interleaved within a round after a warm-up round.
* Precision: median seconds of a training step (forward, backward, SGD step with lr 0) on one batch of
  ``--precision-seq`` tokens, fp32 against bf16 autocast (and fp16 autocast on CUDA), the arms interleaved, one
  step per arm per round, ``--repeats`` rounds after a warm-up round
  (``course_utils.parallel.precision.step_seconds``).

Ratios come from one run on one machine; the header prints the machine (``cpu_description``), torch, threads and
whether the device multiplies bf16 natively.

    flock /tmp/course-heavy.lock nice -n 5 env OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_memory_precision.py
    .venv/bin/python benchmarks/bench_memory_precision.py --quick                 # seconds: small sizes
    .venv/bin/python benchmarks/bench_memory_precision.py --device cuda --n-layer 12 --n-embd 768 \\
        --seq-lens 256,512,1024,2048 --batch 16 --precision-seq 1024            # a GPU
"""

from __future__ import annotations

import argparse
import datetime
import statistics

import torch

from course_utils.device import cpu_description, native_bf16, pick_device
from course_utils.model.gpt import GPT, GPTConfig
from course_utils.parallel.checkpointing import checkpoint_costs
from course_utils.parallel.precision import step_seconds


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads, pinned (0 = torch's default)")
    parser.add_argument("--n-layer", type=int, default=4)
    parser.add_argument("--n-embd", type=int, default=128)
    parser.add_argument("--n-head", type=int, default=4)
    parser.add_argument("--attention", default="sdpa", choices=["sdpa", "manual"])
    parser.add_argument("--seq-lens", default="64,128,256,512")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--precision-seq", type=int, default=64, help="sequence length of the precision timing")
    parser.add_argument("--precision-batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="small sizes, 2 repeats (a smoke test)")
    args = parser.parse_args()
    if args.quick:
        args.n_layer, args.n_embd, args.n_head, args.seq_lens, args.repeats = 2, 32, 2, "32,64", 2
        args.precision_batch, args.precision_seq = 4, 32
    args.seq_lens = [int(t) for t in args.seq_lens.split(",")]
    return args


def random_batch(vocab_size: int, batch: int, seq: int, device: torch.device, seed: int):
    g = torch.Generator(device=device).manual_seed(seed)
    idx = torch.randint(vocab_size, (batch, seq), generator=g, device=device)  # (B, T)
    targets = torch.randint(vocab_size, (batch, seq), generator=g, device=device)  # (B, T)
    return idx, targets


def bench_checkpointing(model: GPT, args: argparse.Namespace, device: torch.device) -> None:
    print(f"\nactivation checkpointing of every block, batch {args.batch}, median of {args.repeats} rounds:")
    print("| T | saved plain (MiB) | saved checkpointed (MiB) | of which block inputs | memory saved | plain (ms) "
          "| checkpointed (ms) | time added |")
    print("|---|---|---|---|---|---|---|---|")
    for T in args.seq_lens:
        idx, targets = random_batch(model.config.vocab_size, args.batch, T, device, seed=T)
        c = checkpoint_costs(model, idx, targets, repeats=args.repeats)
        block_inputs = model.config.n_layer * 4 * args.batch * T * model.config.n_embd  # float32 (B, T, C) per block
        print(f"| {T} | {c.plain_bytes / 2**20:.2f} | {c.checkpointed_bytes / 2**20:.2f} | "
              f"{100 * block_inputs / c.checkpointed_bytes:.1f}% | {100 * c.memory_saved:.1f}% "
              f"| {1e3 * c.plain_seconds:.1f} | {1e3 * c.checkpointed_seconds:.1f} | {100 * c.time_added:+.1f}% |")


def bench_precision(model: GPT, args: argparse.Namespace, device: torch.device) -> None:
    arms = ["fp32", "bf16"] + (["fp16"] if device.type == "cuda" else [])
    idx, targets = random_batch(model.config.vocab_size, args.precision_batch, args.precision_seq, device, seed=0)
    seconds: dict[str, list[float]] = {arm: [] for arm in arms}
    for round_ in range(args.repeats + 1):  # round 0 warms every arm up
        for arm in arms:
            s = step_seconds(model, idx, targets, steps=1, precision=arm, warmup=0).seconds[0]
            if round_:
                seconds[arm].append(s)
    medians = {arm: statistics.median(v) for arm, v in seconds.items()}
    tokens = idx.numel()
    print(f"\ntraining step on a batch of {tuple(idx.shape)}, median of {args.repeats} interleaved rounds:")
    for arm in arms:
        print(f"  {arm}: {1e3 * medians[arm]:.1f} ms per step, {tokens / medians[arm]:,.0f} tokens/s, "
              f"{medians['fp32'] / medians[arm]:.2f}x fp32's speed")


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    config = GPTConfig(vocab_size=65, block_size=max(args.seq_lens + [args.precision_seq]), n_layer=args.n_layer,
                       n_head=args.n_head, n_embd=args.n_embd, dropout=0.0, attention=args.attention)
    torch.manual_seed(0)
    model = GPT(config).to(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_description()
    print(f"{datetime.date.today()} | {name} | torch {torch.__version__} | {torch.get_num_threads()} threads | "
          f"native bf16: {native_bf16(device)}")
    print(f"GPT: {config.n_layer} layers, width {config.n_embd}, {config.n_head} heads, attention {config.attention}, "
          f"{sum(p.numel() for p in model.parameters()):,} parameters")
    bench_checkpointing(model, args, device)
    bench_precision(model, args, device)


if __name__ == "__main__":
    main()
