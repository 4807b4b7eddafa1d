#!/usr/bin/env bash
# The checks a CPU-only CI cannot run, as ONE command for a CUDA machine (for example one call of a lent GPU box):
# chapter 11's GPU-marked tests (checkpoint_costs and the CUDA allocator against the formulas, fp16 training with
# loss scaling), then its memory/precision benchmark on CUDA (which adds the fp16 arm) at a GPT-2-small size, then
# chapter 09's SmolLM2-shaped Llama against transformers on CUDA (gpu_llama_check.py, random weights). Needs only
# python3 with a CUDA torch, pytest and the repository (no notebooks, no model downloads, no network).
# Usage: bash benchmarks/gpu_checks.sh [OUTPUT_DIR]   (logs go to OUTPUT_DIR, default build/gpu-checks)
# Record what it prints in benchmarks/RESULTS.md; the CPU CI never runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-build/gpu-checks}"
mkdir -p "$out"
python3 -c 'import torch; assert torch.cuda.is_available(), "no CUDA device: these checks need one"; print(torch.__version__, torch.cuda.get_device_name(0))' | tee "$out/device.txt"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python3 -m pytest -q -rs -m gpu -p no:cacheprovider tests/test_parallel_memory.py tests/test_parallel_precision.py \
    tests/test_parallel_checkpointing.py 2>&1 | tee "$out/gpu_tests.log"
python3 benchmarks/bench_memory_precision.py --device cuda --threads 0 --n-layer 12 --n-embd 768 --n-head 12 \
    --seq-lens 256,512,1024,2048 --batch 8 --precision-seq 512 --precision-batch 16 2>&1 | tee "$out/bench_memory_precision_cuda.log"
python3 benchmarks/gpu_llama_check.py --device cuda 2>&1 | tee "$out/gpu_llama_check.log"
