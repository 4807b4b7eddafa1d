"""Side runs behind chapter 04's emergence grid: addition models of chosen shapes, recipes and seeds, one table.

Chapter 04 trains tiny GPTs on 2-digit addition at one depth (only ``n_embd`` changes). This script reproduces the
runs that chose that grid (``benchmarks/RESULTS.md``, chapter 04, "the emergence grid at one depth"): 1-layer models
against a 2-layer model of similar N (depth is a knob of its own), and widths at 2 layers over several seeds (whether a
run near the transition learns the carry depends on the seed). It prints, per run, the shape, N, the answer-token
loss, each digit's accuracy and exact match, and the wall time; runs go to a process pool and are cached in a
temporary folder (deleted at the end), so nothing of the course cache is touched.

    flock /tmp/course-heavy.lock .venv/bin/python benchmarks/bench_emergence_grid.py                 # the depth check
    .venv/bin/python benchmarks/bench_emergence_grid.py --shapes 2,2,16 2,2,24 2,2,32 --lr 1e-3 --steps 1600 --seeds 0 1
    .venv/bin/python benchmarks/bench_emergence_grid.py --shapes 2,2,16 2,2,32 2,2,64 --lr 1e-3 --steps 2000 \
        --digits 3 --batch-size 128 --test-size 2000                  # the gpu grid's recipe, on a CPU
"""

from __future__ import annotations

import argparse
import tempfile
import time

from course_utils.device import cpu_description
from course_utils.scaling.emergence import AdditionRun, train_addition_run
from course_utils.scaling.sweep import local_executor, run_key, run_sweep

DEPTH_CHECK = ("1,2,48", "1,4,64", "1,4,96", "2,2,32")   # 1-layer shapes of N >= the 2-layer (2, 2, 32)'s 25,472


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=list(DEPTH_CHECK), help="n_layer,n_head,n_embd each")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--digits", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--test-size", type=int, default=250, help="held-out problems scored per run")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    shapes = [tuple(int(v) for v in s.split(",")) for s in args.shapes]
    if any(len(s) != 3 for s in shapes):
        parser.error("each --shapes entry is n_layer,n_head,n_embd, e.g. 2,2,32")
    recipe = dict(digits=args.digits, steps=args.steps, lr=args.lr, batch_size=args.batch_size,
                  test_size=args.test_size)
    specs = [AdditionRun(*shape, seed=seed, **recipe) for shape in shapes for seed in args.seeds]
    print(f"{cpu_description()}; {len(specs)} runs of {args.steps} steps of {args.batch_size} problems at lr "
          f"{args.lr:g}, {args.digits} digits, {args.test_size} held-out problems; {args.workers} workers of one "
          "thread")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as cache, \
            local_executor(args.workers, preload=("course_utils.scaling.emergence",)) as executor:
        sweep = run_sweep(specs, train_addition_run, cache, executor=executor)
    print(f"wall {time.perf_counter() - start:.1f} s; failures: {sweep.failures or 'none'}")
    print(f"{'shape':>12} {'seed':>4} {'N':>8} {'answer loss':>11} {'digit accuracy (units first)':>30} "
          f"{'exact':>7} {'s':>5}")
    for spec in specs:
        r = sweep.results.get(run_key(spec))
        if r is None:
            continue
        digits = " ".join(f"{x:6.1%}" for x in r["digit_accuracy"])
        print(f"{str((spec.n_layer, spec.n_head, spec.n_embd)):>12} {spec.seed:>4} {r['n_params']:>8,} "
              f"{r['answer_token_loss']:>11.3f} {digits:>30} {r['exact_match']:>7.1%} {r['seconds']:>5.1f}")


if __name__ == "__main__":
    main()
