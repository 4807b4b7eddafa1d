"""Our SmolLM2 decoding loop (course_utils.generate.loop) vs. transformers' model.generate, same settings and seed,
and the cost of validating every step (issue 10: the loop used to scan each step's logits for NaN several times).

Settings: SmolLM2-135M-Instruct in float32 on CPU, a short prompt, 128 new tokens, sampling with temperature 0.8,
top-k 50, top-p 0.9 (and, separately, greedy). Three arms per setting, interleaved within each round, median of
``--repeats`` rounds after a warm-up round, all in one process (so the ratios compare like with like):

* ``ours``: the loop as it is now, inputs validated once at entry, no per-step scan;
* ``ours + per-step scans``: the same loop with the old behaviour put back: every step's logits scanned by
  ``check_finite`` as many times as the old code did (5 per step when sampling with temperature, top-k and top-p:
  process_logits, apply_temperature, top_k_filter, top_p_filter and sample each scanned; 1 per step for greedy);
* ``generate``: ``model.generate`` with the same settings and seed.

All three must produce identical tokens (asserted). Printed: tokens/s per arm, the ratios, peak RSS. On a CPU the
scans cost little next to the forward pass; on a GPU each scan is also a device-to-host synchronisation.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_generation.py --threads 1
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch

from course_utils.generate.loop import generate
from course_utils.generate.sampling import SamplingConfig, check_finite
from course_utils.model.pretrained import load_smollm2

PROMPT = "Once upon a time, in a small village by the sea, there lived"


class ScanEveryStep(torch.nn.Module):
    """The model, plus ``scans`` value scans of each step's last logits: the old per-token validation."""

    def __init__(self, model, scans: int):
        super().__init__()
        self.model, self.scans, self.config = model, scans, model.config

    def forward(self, **kwargs):
        out = self.model(**kwargs)
        logits = out.logits[:, -1, :].float()  # (B, V)
        for _ in range(self.scans):
            check_finite(logits)
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads, pinned (0 = torch's default)")
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
        "sampling T=0.8 top-k 50 top-p 0.9": (SamplingConfig(temperature=0.8, top_k=50, top_p=0.9), 5,
                                              dict(do_sample=True, temperature=0.8, top_k=50, top_p=0.9)),
        "greedy": (SamplingConfig(greedy=True), 1, dict(do_sample=False)),
    }
    for name, (config, scans, hf_kwargs) in arms.items():
        per_token = {"ours": [], "ours + per-step scans": [], "generate": []}
        scanned = ScanEveryStep(model, scans)
        for rep in range(args.repeats + 1):  # the first round is a warm-up
            results = {}
            for arm in per_token:
                torch.manual_seed(rep)
                start = time.perf_counter()
                if arm == "generate":
                    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                                         min_new_tokens=0, eos_token_id=eos, pad_token_id=eos, **hf_kwargs)
                else:
                    out = generate(model if arm == "ours" else scanned, ids, n, config,
                                   torch.Generator("cpu").manual_seed(rep), eos_token_id=eos).ids
                seconds = time.perf_counter() - start
                results[arm] = out
                if rep:
                    per_token[arm].append(seconds / (out.shape[1] - ids.shape[1]))
            assert all(torch.equal(results["ours"], out) for out in results.values()), f"{name}: tokens differ"
        median = {arm: statistics.median(values) for arm, values in per_token.items()}
        rates = " | ".join(f"{arm} {1 / s:6.1f} tokens/s" for arm, s in median.items())
        print(f"{name}: {rates}")
        print(f"  ratio ours/generate {median['generate'] / median['ours']:.3f} (target >= 0.8); "
              f"ratio ours/(ours + per-step scans) {median['ours + per-step scans'] / median['ours']:.3f} "
              f"(> 1 = validating once is faster); tokens identical in all three arms")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
