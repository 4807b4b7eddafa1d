"""Distributed training on this machine: launcher start-up, DDP on 2 processes against 1 process with 2 threads,
and all-reduce bandwidth, through the course's launcher (course_utils.parallel.launch).

  * start-up: seconds from ``launch`` to each rank running user code (a fresh Python imports torch), and the whole
    launch of a trivial function (start, rendezvous, one all-reduce, teardown);
  * DDP tokens/s: the same tiny GPT, the same combined batches, the same number of AdamW steps; arm "ddp" = 2 ranks
    with 1 thread each (each rank computes half the batch, gradients all-reduced), arm "threads" = 1 process with 2
    torch threads on the whole batch, arm "1 thread" = 1 process, 1 thread (the baseline both try to beat).
    Throughput excludes start-up and the first step of each arm; the arms run in ``--rounds`` interleaved rounds
    (default 5), reported as median and range;
  * all-reduce: median time of ``dist.all_reduce`` of float32 tensors from 1 KB to 64 MB (5 repeats after a
    warm-up); algorithmic bandwidth = size / time, bus bandwidth = algorithmic x 2 (p - 1) / p (the bytes each rank
    actually sends in a ring, the convention of nccl-tests).
The backend is gloo on CPU; ``--backend auto`` picks NCCL where there is one CUDA device per rank, and the same
script then measures GPUs (models and batches on each rank's device).

    .venv/bin/python benchmarks/bench_distributed.py                 # 20 steps, batch 16 x 64, sizes 1 KB-64 MB
    .venv/bin/python benchmarks/bench_distributed.py --quick         # 6 steps, 2 rounds, sizes 1 KB-1 MB
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import time

import torch

from course_utils.device import cpu_description, torch_threads
from course_utils.evaluate.timing import compare_rounds
from course_utils.model.gpt import GPTConfig
from course_utils.parallel.ddp import (DataParallelSetup, all_reduce_timing_rank, ddp_training_rank, make_batches,
                                       ring_allreduce_bytes_per_rank, tokens_per_second, train_single_process)
from course_utils.parallel.launch import hello_rank, launch, resolve_backend


def measure_startup(backend: str, world_size: int, repeats: int) -> tuple[float, float]:
    """Median seconds to the last rank's first line of user code, and median seconds of the whole launch."""
    to_user_code, whole = [], []
    for _ in range(repeats):
        start = time.time()
        ranks = launch(hello_rank, world_size, backend=backend)
        whole.append(time.time() - start)
        to_user_code.append(max(r["started"] for r in ranks) - start)
    return statistics.median(to_user_code), statistics.median(whole)


def measure_ddp(backend: str, world_size: int, steps: int, batch: int, config: GPTConfig,
                rounds: int) -> dict[str, list[float] | float]:
    """Tokens/s of the three arms in ``rounds`` interleaved rounds (DDP launch, 1 process x p threads, 1 x 1), so a
    slow moment of a shared machine hits every arm alike; plus the gradient size and all-reduce share of round 1."""
    ids = torch.randint(0, config.vocab_size, (200_000,), generator=torch.Generator().manual_seed(0))
    setup = DataParallelSetup(config, make_batches(ids, steps, batch, config.block_size, seed=1))
    device = "cuda" if backend == "nccl" else "cpu"
    arms = [f"ddp, {world_size} processes x 1 thread", f"1 process x {world_size} threads", "1 process x 1 thread"]
    out: dict = {arm: [] for arm in arms}
    for round_ in range(rounds):
        ranks = launch(ddp_training_rank, world_size, args=(setup,), backend=backend, threads_per_rank=1)
        out[arms[0]].append(tokens_per_second(ranks[0]["seconds"], setup.tokens_per_step))
        for arm, threads in zip(arms[1:], (world_size, 1)):
            with torch_threads(threads):
                seconds = train_single_process(setup, device)[2]
            out[arm].append(tokens_per_second(seconds, setup.tokens_per_step))
        if round_ == 0:
            out["grad_bytes"] = ranks[0]["grad_bytes"]
            out["bucket_bytes"] = ranks[0]["bucket_bytes"]
            out["allreduce_ms"] = 1e3 * ranks[0]["allreduce_seconds"]
            out["step_ms_ddp"] = 1e3 * statistics.median(ranks[0]["seconds"][1:])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="auto", choices=["auto", "gloo", "nccl"])
    parser.add_argument("--world-size", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=16, help="combined batch (split across the ranks)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the three DDP/thread arms")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    steps = 6 if args.quick else args.steps
    max_size = 2**20 if args.quick else 64 * 2**20
    backend = resolve_backend(args.backend, args.world_size)
    config = GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128)
    print(f"# bench_distributed, {datetime.date.today()}, {platform.node()}")
    print(f"CPU: {cpu_description()}; torch {torch.__version__}; backend {backend}; world size {args.world_size}")

    user_code, whole = measure_startup(backend, args.world_size, repeats=1 if args.quick else 3)
    print(f"\nstart-up: {user_code:.2f} s from launch() to the last rank's user code; {whole:.2f} s for a whole "
          "launch (start, rendezvous, one all-reduce, teardown), medians")

    rounds = 2 if args.quick else args.rounds
    ddp = measure_ddp(backend, args.world_size, steps, args.batch, config, rounds)
    print(f"\nDDP, tiny GPT ({config.n_layer} x {config.n_embd}, T={config.block_size}), combined batch {args.batch}, "
          f"{steps} steps (first skipped), {rounds} interleaved rounds:")
    print("| arm | tokens/s, median | range | median vs 1 process x 1 thread |\n|---|---|---|---|")
    arms = [k for k in ddp if "process" in k]
    medians = {arm: statistics.median(ddp[arm]) for arm in arms}
    base = medians["1 process x 1 thread"]
    for arm in arms:
        print(f"| {arm} | {medians[arm]:,.0f} | {min(ddp[arm]):,.0f}-{max(ddp[arm]):,.0f} | "
              f"{medians[arm] / base:.2f}x |")
    ddp_arm, threads_arm = arms[0], arms[1]
    ratio, rule = compare_rounds(ddp[ddp_arm], ddp[threads_arm], tie=0.1)  # the notebook's rule, one copy
    verdict = (f"the ranges do not overlap: {'DDP' if ratio > 1 else 'threads'} faster" if rule == "separate" else
               f"the ranges overlap: {rule}")
    print(f"DDP / threads (medians): {ratio:.2f}x; {verdict}")
    print(f"DDP's buckets after training (bytes): {ddp['bucket_bytes']}")
    share = ddp["allreduce_ms"] / ddp["step_ms_ddp"]
    print(f"gradient all-reduced per step: {ddp['grad_bytes'] / 1e6:.2f} MB (each rank sends "
          f"{ring_allreduce_bytes_per_rank(ddp['grad_bytes'], args.world_size) / 1e6:.2f} MB in a ring); a lone "
          f"all-reduce of it takes {ddp['allreduce_ms']:.2f} ms = {share:.0%} of a DDP step "
          f"({ddp['step_ms_ddp']:.1f} ms, median)")

    sizes = [2**k for k in range(10, max_size.bit_length(), 2)]  # 1 KB, 4 KB, ..., max_size
    times = launch(all_reduce_timing_rank, args.world_size, args=(sizes,), backend=backend)[0]
    print("\n| size | all-reduce time | algorithmic bandwidth | bus bandwidth |\n|---|---|---|---|")
    for n in sizes:
        algbw = n / times[n]
        print(f"| {n / 1024:,.0f} KiB | {1e3 * times[n]:.3f} ms | {algbw / 1e6:,.1f} MB/s | "
              f"{ring_allreduce_bytes_per_rank(int(algbw), args.world_size) / 1e6:,.1f} MB/s |")


if __name__ == "__main__":
    main()
