"""Cost of a materialised T x T attention mask versus the is_causal flag, at growing sequence length T.

For each T it measures, with PyTorch's scaled_dot_product_attention on causal self-attention (B=1, H heads of
width 64):
  * flag:     attn_mask=None, is_causal=True (the kernel computes the mask from indices, FlashAttention-style);
  * bool:     a materialised boolean (T, T) mask tensor;
  * additive: a materialised float32 (T, T) mask with 0 / -inf;
  * scratch:  course_utils.model.attention (materialises the (B, H, T, T) scores and weights).
It prints best-of-N times, the ratios to the flag in the same run, the bytes of each mask, and the peak extra memory
of one call (CUDA: torch.cuda.max_memory_allocated; CPU, Linux only: peak RSS growth over the call, in a fresh
subprocess per case).

Usage: python benchmarks/bench_mask_memory.py [--T 512 1024 2048 4096] [--heads 4] [--repeats 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from course_utils.model import masks
from course_utils.model.attention import scaled_dot_product_attention
from course_utils.device import make_generator, pick_device

KINDS = ("flag", "bool", "additive", "scratch")


def make_inputs(T: int, heads: int, device: torch.device):
    g = make_generator(0, device)  # the tensors are drawn on `device`, so the generator lives there too
    q, k, v = (torch.randn(1, heads, T, 64, generator=g, device=device) for _ in range(3))  # (B, H, T, D)
    return q, k, v


def make_call(kind: str, q, k, v):
    T = q.shape[-2]
    if kind == "flag":
        return lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True)
    mask = masks.causal_mask(T, q.device)  # (T, T)
    if kind == "bool":
        return lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    if kind == "additive":
        additive = masks.to_additive(mask)
        return lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=additive)
    return lambda: scaled_dot_product_attention(q, k, v, mask)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def best_time(fn, repeats: int, device: torch.device) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def cpu_peak_extra_mib(T: int, heads: int, kind: str) -> float:
    """Peak RSS growth of one call, measured in a fresh process so earlier cases leave no high-water mark."""
    out = subprocess.run([sys.executable, __file__, "--child", str(T), str(heads), kind],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["extra_mib"]


def _child(T: int, heads: int, kind: str) -> None:
    torch.set_num_threads(1)
    device = torch.device("cpu")
    q, k, v = make_inputs(T, heads, device)
    with open("/proc/self/clear_refs", "w") as f:  # Linux: reset the peak-RSS high-water mark (VmHWM)
        f.write("5")
    before = _status_kib("VmRSS")
    with torch.no_grad():
        make_call(kind, q, k, v)()  # building the mask counts: it is part of the cost
    print(json.dumps({"extra_mib": (_status_kib("VmHWM") - before) / 1024}))


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status (the CPU memory measurement needs Linux)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--T", type=int, nargs="+", default=[512, 1024, 2048, 4096])
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default=None)
    parser.add_argument("--no-memory", action="store_true", help="skip the per-case peak-memory measurement")
    args = parser.parse_args()
    device = pick_device(args.device)
    print(f"device {device} | torch {torch.__version__} | {torch.get_num_threads()} threads | heads {args.heads}, "
          f"head size 64, batch 1 | best of {args.repeats}")
    header = (f"{'T':>7} | " + " | ".join(f"{k:>9} ms" for k in KINDS)
              + " | bool/flag | add/flag | scratch/flag | bool mask | f32 mask | peak extra MiB ("
              + ", ".join(KINDS) + ")")
    print(header)
    for T in args.T:
        q, k, v = make_inputs(T, args.heads, device)
        times = {}
        with torch.no_grad():
            for kind in KINDS:
                times[kind] = best_time(make_call(kind, q, k, v), args.repeats, device)
        peaks = {}
        if not args.no_memory:
            for kind in KINDS:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                    base = torch.cuda.memory_allocated()
                    with torch.no_grad():
                        make_call(kind, q, k, v)()  # building the mask counts: it is part of the cost
                    torch.cuda.synchronize()
                    peaks[kind] = (torch.cuda.max_memory_allocated() - base) / 2**20
                else:
                    peaks[kind] = cpu_peak_extra_mib(T, args.heads, kind)
        del q, k, v
        flag = times["flag"]
        print(f"{T:>7} | " + " | ".join(f"{times[k] * 1e3:>12.2f}" for k in KINDS)
              + f" | {times['bool'] / flag:>9.2f} | {times['additive'] / flag:>8.2f} | {times['scratch'] / flag:>12.2f}"
              + f" | {masks.mask_bytes(T) / 2**20:>6.1f} MiB"
                f" | {masks.mask_bytes(T, dtype=torch.float32) / 2**20:>5.1f} MiB"
              + (" | " + ", ".join(f"{peaks[k]:.0f}" for k in KINDS) if peaks else ""), flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        _child(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    else:
        main()
