"""Our SmolLM2 decoding loop (course_utils.generate.loop) vs. transformers' model.generate, same settings and seed.

Settings: SmolLM2-135M-Instruct in float32 on CPU, a short prompt, 128 new tokens, sampling with temperature 0.8,
top-k 50, top-p 0.9 (and, separately, greedy). Each arm runs ``--repeats`` times, alternating, and we report the
median; the two must produce identical tokens (checked: same seed for our explicit generator and generate's global
one). Printed: seconds, tokens/s, the ratio ours/generate, peak memory (RSS).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_generation.py
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch

from course_utils.generate.loop import generate
from course_utils.model.pretrained import load_smollm2
from course_utils.generate.sampling import SamplingConfig

PROMPT = "Once upon a time, in a small village by the sea, there lived"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    smol = load_smollm2(verbose=False)
    model, tok = smol.model, smol.tokenizer
    ids = tok(PROMPT, return_tensors="pt").input_ids
    eos = tok.eos_token_id
    n = args.new_tokens
    print(f"SmolLM2-135M-Instruct float32, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"prompt {ids.shape[1]} tokens, {n} new tokens, median of {args.repeats}")
    arms = {
        "sampling T=0.8 top-k 50 top-p 0.9": (SamplingConfig(temperature=0.8, top_k=50, top_p=0.9),
                                              dict(do_sample=True, temperature=0.8, top_k=50, top_p=0.9)),
        "greedy": (SamplingConfig(greedy=True), dict(do_sample=False)),
    }
    for name, (config, hf_kwargs) in arms.items():
        ours_t, theirs_t = [], []
        for rep in range(args.repeats + 1):  # the first round is a warm-up
            start = time.perf_counter()
            ours = generate(model, ids, n, config, torch.Generator().manual_seed(rep), eos_token_id=eos)
            t_ours = time.perf_counter() - start
            torch.manual_seed(rep)
            start = time.perf_counter()
            theirs = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=0,
                                    eos_token_id=eos, pad_token_id=eos, **hf_kwargs)
            t_theirs = time.perf_counter() - start
            assert torch.equal(ours.ids, theirs), f"{name}: our tokens differ from generate's"
            if rep:
                ours_t.append(t_ours / ours.new_ids.shape[1])
                theirs_t.append(t_theirs / (theirs.shape[1] - ids.shape[1]))
        ours_s, theirs_s = statistics.median(ours_t), statistics.median(theirs_t)
        print(f"{name}: ours {1 / ours_s:6.1f} tokens/s | generate {1 / theirs_s:6.1f} tokens/s | "
              f"ratio ours/generate {theirs_s / ours_s:.2f} (target >= 0.8); tokens identical")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
