"""SmolLM2-135M-Instruct load time: converting the packaged GGUF file (cold) versus the course's float32 cache.

Runs both in one process against a fresh temporary cache folder, checks that greedy generation from the cached
model is token-for-token identical to the freshly converted one, and prints both times and their ratio.

    .venv/bin/python benchmarks/bench_smollm2_load.py
"""

from __future__ import annotations

import os
import pathlib
import resource
import tempfile

import torch


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["COURSE_CACHE_DIR"] = tmp
        from course_utils.model.pretrained import load_smollm2

        cold = load_smollm2(verbose=False)
        cached = load_smollm2(verbose=False)
        assert cold.source == "gguf" and cached.source == "cache"
        prompt = cold.tokenizer("To be, or not to be", return_tensors="pt")
        a = cold.model.generate(**prompt, max_new_tokens=40, do_sample=False)
        b = cached.model.generate(**prompt, max_new_tokens=40, do_sample=False)
        same = torch.equal(a, b)
        size_mb = sum(f.stat().st_size for f in pathlib.Path(tmp).rglob("*")
                      if f.is_file()) / 2**20
    print(f"cold load (GGUF de-quantisation + conversion + cache write): {cold.seconds:6.2f} s")
    print(f"cached load (float32 safetensors):                          {cached.seconds:6.2f} s")
    print(f"speed-up {cold.seconds / cached.seconds:.1f}x | cache size {size_mb:.0f} MB | "
          f"greedy 40 tokens identical: {same} | peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
