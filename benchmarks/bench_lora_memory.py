"""Training memory and step time of SmolLM2-135M-Instruct: full fine-tuning versus LoRA, measured on the real model.

Arms (every one trains on the same batch: ``--batch`` x ``--seq`` random token ids from a seeded generator, labels =
input ids, AdamW lr 1e-4):
  * full:       every parameter trainable;
  * lora:       LoRA r=8, alpha=16 on q_proj and v_proj (course_utils.lora.apply_lora, Hu et al. 2021's setting);
  * all-linear: LoRA r=16, alpha=32 on every Linear except the output head.
Each arm runs in its own subprocess (so the peak memory is that arm's alone), with ``torch.set_num_threads`` and
OMP_NUM_THREADS pinned to ``--threads``. Measured per arm:
  * exact bytes of the gradients (after the first backward) and of AdamW's state (every tensor in
    ``optimizer.state`` after the first step: exp_avg, exp_avg_sq and the per-parameter step counter);
  * resident memory: RSS right after loading the model (every weight read once, so lazily mapped pages are in),
    then the peak RSS while training (Linux: the high-water mark is reset after loading through
    /proc/self/clear_refs, then read with ``resource.getrusage`` ru_maxrss), and their difference, the increase
    that training costs;
  * the median time of ``--steps`` optimizer steps (forward, backward, AdamW step, zero_grad) after one warm-up step.
The arms run in the order full, lora, all-linear and then again in reverse order (two rounds, so a drift of the
machine's speed shows up as a disagreement between rounds); the ratios LoRA / full come from the same run.

    .venv/bin/python benchmarks/bench_lora_memory.py                  # batch 8 x 64 tokens, 5 timed steps, 2 threads
    .venv/bin/python benchmarks/bench_lora_memory.py --quick          # one round, 2 timed steps, batch 2 x 16

Left out: activation memory on its own (it is inside the RSS increase), GPU memory, mixed precision, dropout.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch

ARMS = ("full", "lora", "all-linear")


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status (the memory measurement needs Linux)")


def _tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def _prepare(model: torch.nn.Module, arm: str) -> None:
    from course_utils.lora.wrap import apply_lora

    g = torch.Generator("cpu").manual_seed(0)  # LoRA's A initialisation; CPU model, CPU generator
    if arm == "lora":
        apply_lora(model, ["q_proj", "v_proj"], r=8, alpha=16, generator=g)
    elif arm == "all-linear":
        apply_lora(model, "all-linear", r=16, alpha=32, generator=g)
    else:
        for p in model.parameters():
            p.requires_grad_(True)


def run_arm(arm: str, steps: int, batch: int, seq: int, threads: int) -> dict:
    """One arm in this process; returns its measurements (bytes, KiB of RSS, seconds)."""
    from course_utils.lora.wrap import count_parameters
    from course_utils.model.pretrained import load_smollm2

    torch.set_num_threads(threads)
    model = load_smollm2(verbose=False).model
    with torch.no_grad():
        touched = sum(float(p.sum()) for p in model.parameters())  # read every weight page: all of it is resident
    load_peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with open("/proc/self/clear_refs", "w") as f:  # Linux: reset the RSS high-water mark, so the peak is training's
        f.write("5")
    after_load_kib = _status_kib("VmRSS")
    _prepare(model, arm)
    model.train()
    trainable, total = count_parameters(model)
    g = torch.Generator("cpu").manual_seed(1234)  # the same batch for every arm
    ids = torch.randint(model.config.vocab_size, (batch, seq), generator=g)  # (B, T)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step() -> int:
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        grad_bytes = _tensor_bytes(p.grad for p in model.parameters() if p.grad is not None)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return grad_bytes

    grad_bytes = step()  # warm-up step, also the one whose gradients and optimizer state are counted
    state_bytes = sum(_tensor_bytes(state.values()) for state in optimizer.state.values())
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return dict(arm=arm, trainable=trainable, total=total, grad_bytes=grad_bytes, state_bytes=state_bytes,
                load_peak_kib=load_peak_kib, after_load_kib=after_load_kib, peak_kib=peak_kib,
                median_s=statistics.median(times), times=times, weight_sum=touched)


def run_in_subprocess(arm: str, args: argparse.Namespace) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    command = [sys.executable, __file__, "--child", arm, "--steps", str(args.steps), "--batch", str(args.batch),
               "--seq", str(args.seq), "--threads", str(args.threads)]
    out = subprocess.run(command, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"arm {arm} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _mb(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:9.1f}"


def print_row(round_no: int, r: dict) -> None:
    increase_kib = r["peak_kib"] - r["after_load_kib"]
    print(f"{round_no:5d} {r['arm']:>10s} | {r['trainable']:>11,} | {_mb(r['grad_bytes'])} | {_mb(r['state_bytes'])} "
          f"| {r['after_load_kib'] / 1024:8.0f} | {r['peak_kib'] / 1024:8.0f} | {increase_kib / 1024:8.0f} "
          f"| {r['median_s']:8.3f} | {' '.join(f'{t:.2f}' for t in r['times'])}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5, help="timed steps after one warm-up step (>= 5 for results)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=64, help="tokens per sequence")
    parser.add_argument("--threads", type=int, default=2, help="torch threads and OMP_NUM_THREADS in every arm")
    parser.add_argument("--rounds", type=int, default=2, help="rounds; odd rounds run the arms in reverse order")
    parser.add_argument("--quick", action="store_true", help="a fast check: 1 round, 2 steps, batch 2 x 16")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.batch, args.seq, args.rounds = 2, 2, 16, 1
    if min(args.steps, args.batch, args.seq, args.threads, args.rounds) < 1:
        raise SystemExit("--steps, --batch, --seq, --threads and --rounds must all be >= 1")

    from course_utils.device import cpu_description

    print(f"CPU: {cpu_description()}")
    print(f"torch {torch.__version__}, {args.threads} threads per arm (pinned), batch {args.batch} x {args.seq} "
          f"tokens, median of {args.steps} steps after 1 warm-up, load average before: {os.getloadavg()[0]:.2f}")
    print("round        arm |   trainable |  grads MiB | AdamW MiB | RSS load | RSS peak | increase | median s "
          "| step times (s)")
    results: dict[str, list[dict]] = {arm: [] for arm in ARMS}
    for round_no in range(args.rounds):
        for arm in (ARMS if round_no % 2 == 0 else tuple(reversed(ARMS))):
            r = run_in_subprocess(arm, args)
            results[arm].append(r)
            print_row(round_no + 1, r)
    print("(MiB = 2^20 bytes; RSS columns in MiB: after loading, peak while training, and the increase)")
    full = results["full"]
    for arm in ARMS[1:]:
        for round_no, (f, r) in enumerate(zip(full, results[arm]), start=1):
            state = r["state_bytes"] / f["state_bytes"]
            grads = r["grad_bytes"] / f["grad_bytes"]
            rss = (r["peak_kib"] - r["after_load_kib"]) / (f["peak_kib"] - f["after_load_kib"])
            speed = r["median_s"] / f["median_s"]
            print(f"{arm:>10s} / full, round {round_no}: AdamW state {state:.4f}, gradients {grads:.4f}, "
                  f"peak RSS increase {rss:.3f}, median step time {speed:.3f}")
    peak = max(r["peak_kib"] for rs in results.values() for r in rs)
    print(f"largest peak RSS of an arm: {peak / 1024:.0f} MiB; load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child = argparse.ArgumentParser()
        child.add_argument("--child")
        for flag in ("--steps", "--batch", "--seq", "--threads"):
            child.add_argument(flag, type=int)
        a = child.parse_args()
        print(json.dumps(run_arm(a.child, a.steps, a.batch, a.seq, a.threads)))
    else:
        main()
