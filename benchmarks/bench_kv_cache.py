"""KV cache vs. recomputation: generate 512 new tokens with the course's tiny GPT, with and without the cache.

Both arms use the same randomly initialised GPT (timing does not depend on the weights), the same 16-token prompt,
greedy decoding, and must produce identical tokens (checked). The two arms take turns, ``--repeats`` rounds of one
cached and one uncached generation, the first of the two alternating (a slow spell of the shared machine hits both),
and each keeps its fastest round.
Printed: seconds, tokens/s, the speed-up ratio with the range of the per-round ratios, per-token latency at a few
sequence lengths, and peak memory (RSS) of the process.

    .venv/bin/python benchmarks/bench_kv_cache.py                # the benchmark (about a minute on 2 cores)
    .venv/bin/python benchmarks/bench_kv_cache.py --new-tokens 64   # quick look, not a result
"""

from __future__ import annotations

import argparse
import resource

import torch

from course_utils.generate.kv_cache import KVCache, cached_forward, generate_cached, generate_uncached, kv_cache_bytes
from course_utils.model.gpt import GPT, GPTConfig
from course_utils.generate.sampling import SamplingConfig
from course_utils.device import timed  # (fn(), seconds), CUDA/MPS synchronised


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--new-tokens", type=int, default=512)
    parser.add_argument("--prompt", type=int, default=16)
    parser.add_argument("--n-layer", type=int, default=4)
    parser.add_argument("--n-embd", type=int, default=256)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of one cached and one uncached generation")
    args = parser.parse_args()
    if args.repeats < 1 or args.new_tokens < 1:
        parser.error(f"--repeats and --new-tokens must be at least 1, got {args.repeats} and {args.new_tokens}")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=65, block_size=args.prompt + args.new_tokens, n_layer=args.n_layer, n_head=4,
                       n_embd=args.n_embd)
    model = GPT(config).eval()
    idx = torch.randint(0, 65, (1, args.prompt), generator=torch.Generator("cpu").manual_seed(1))  # CPU model, CPU draw
    greedy = SamplingConfig(greedy=True)
    print(f"tiny GPT {model.num_parameters():,} parameters, {config.n_layer} layers x {config.n_head} heads x "
          f"{config.head_size} dims, block_size {config.block_size}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    generate_cached(model, idx, 8, greedy)  # warm-up
    rounds = []  # (cached seconds, uncached seconds) per round
    for r in range(args.repeats):
        out, seconds = {}, {}
        for arm in (("cached", "uncached") if r % 2 == 0 else ("uncached", "cached")):  # first arm alternates
            fn = generate_cached if arm == "cached" else generate_uncached
            out[arm], seconds[arm] = timed(fn, model, idx, args.new_tokens, greedy)
        assert torch.equal(out["cached"], out["uncached"]), "cached and uncached generations differ"
        rounds.append((seconds["cached"], seconds["uncached"]))
    cached = out["cached"]
    t_cached, t_uncached = min(r[0] for r in rounds), min(r[1] for r in rounds)
    ratios = [u / c for c, u in rounds]
    n = args.new_tokens
    print(f"no cache : {t_uncached:8.2f} s  {n / t_uncached:8.1f} tokens/s  (best of {args.repeats} rounds)")
    print(f"KV cache : {t_cached:8.2f} s  {n / t_cached:8.1f} tokens/s  (best of {args.repeats} rounds)")
    print(f"speed-up (no cache / cache): {t_uncached / t_cached:.1f}x  (target >= 5x; per-round ratios "
          f"{min(ratios):.1f}x to {max(ratios):.1f}x); outputs identical")

    print("per-token latency (ms) at sequence length T:")
    seq = cached[:, : config.block_size]
    for T in sorted({min(T, seq.shape[1] - 1) for T in (32, 128, 256, config.block_size - 1)}):  # each length once
        with torch.no_grad():
            _, full = timed(lambda: model(seq[:, : T + 1]))
            cache = KVCache.empty(model, 1)
            cached_forward(model, seq[:, :T], cache)
            _, step = timed(lambda: cached_forward(model, seq[:, T : T + 1], cache))
        print(f"  T={T:4d}: recompute {full * 1e3:7.2f} ms | cached step {step * 1e3:6.2f} ms")
    size = kv_cache_bytes(config.n_layer, config.n_head, config.head_size, config.block_size, 4)
    print(f"KV cache for {config.block_size} tokens in float32: {size / 2**20:.2f} MiB")
    print(f"peak RSS: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
