"""Benchmark for chapter 10: label scoring with a shared prompt cache against one forward pass per label, and the
linear probe's feature-extraction rate, on real SmolLM2-135M-Instruct (float32).

Arms, interleaved round by round, on the same passages and prompts (held-out plays, balanced over the genres):

* ``per label``: :func:`course_utils.classify.scoring.label_logprobs_per_label`, one full forward pass over
  prompt + label for each of the 3 labels (only the label positions go through the output head);
* ``shared cache``: :func:`course_utils.classify.scoring.label_logprobs`, the prompt run once and its cache shared
  by the labels, one prompt at a time (the same batch size as the baseline: the ratio is the cache's alone);
* ``shared cache, batched``: :func:`course_utils.classify.scoring.label_logprobs_many`, ``--batch-size`` prompts per
  forward pass (sorted by length, left-padded), reported without a target;
* ``shared prefix, batched`` (only with ``--k`` >= 1 and one-token labels, i.e. the ``genre`` template):
  :func:`course_utils.classify.scoring.label_logprobs_after_prefix`, the k shots (the same for every prompt) run once
  and their cache copied to each batch of ``--batch-size`` passages; its ratio is against ``shared cache, batched``,
  the same batches with the shots run again in every row (chapter 10's few-shot cell scores this way).

Two templates: ``genre`` (labels " comedy", " history", " tragedy": one token each, so the shared arm is exactly one
forward pass per prompt) and ``chat_inline`` (SmolLM2's chat template; "comedy", "history", "tragedy" are 2, 1 and 3
tokens, so the shared arm adds a short second pass over the label tokens). The scores of all arms must agree
(asserted, 1e-3 nats). Target: shared cache >= 2x the per-label arm in examples per second.

Feature extraction: :func:`course_utils.classify.features.hidden_state_features` at two layers, both poolings, in
passages per second.

Usage: ``python benchmarks/bench_label_scoring.py [--threads 1] [--examples 24] [--rounds 3] [--k 0]`` (``--k 4`` adds
the shared-prefix arm)
"""

from __future__ import annotations

import argparse
import os
import statistics


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--examples", type=int, default=24, help="prompts per template (a multiple of 3)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per arm (median reported)")
    parser.add_argument("--k", type=int, default=0, help="shots per prompt (drawn from the training plays)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--feature-passages", type=int, default=48)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    from course_utils.classify.features import hidden_state_features
    from course_utils.classify.passages import make_passages, sample_per_genre, split_by_play
    from course_utils.classify.prompts import build_prompt, draw_shots, get_template, split_prompt
    from course_utils.classify.scoring import (label_logprobs, label_logprobs_after_prefix, label_logprobs_many,
                                               label_logprobs_per_label)
    from course_utils.device import cpu_description
    from course_utils.model.pretrained import load_smollm2
    from course_utils.device import timed  # (fn(*args, **kwargs), seconds), CUDA/MPS synchronised

    loaded = load_smollm2("cpu", verbose=True)
    model, tok = loaded.model, loaded.tokenizer
    split = split_by_play(make_passages(max_chars=400), test_fraction=0.3, seed=0)
    test = sample_per_genre(split.test, args.examples // 3, seed=0)
    print(f"{cpu_description()}, torch {torch.__version__}, {args.threads} thread(s); SmolLM2 from {loaded.source} "
          f"in {loaded.seconds:.1f} s; {len(test)} test passages, k = {args.k}")

    rows = []
    for name in ("genre", "chat_inline"):
        template = get_template(name)
        shots = draw_shots(split.train, args.k, seed=0)
        prompts = [build_prompt(template, p.text, shots, tok) for p in test]
        labels = template.labels()
        n_tokens = sum(len(tok(p, add_special_tokens=False)["input_ids"]) for p in prompts) / len(prompts)
        times = {"per label": [], "shared cache": [], "shared cache, batched": []}
        label_tokens = [len(tok(l, add_special_tokens=False)["input_ids"]) for l in labels]
        prefix_arm = args.k > 0 and not template.chat and label_tokens == [1] * len(labels)
        if prefix_arm:
            prefix = split_prompt(template, test[0].text, shots)[0]
            suffixes = [split_prompt(template, p.text, shots)[1] for p in test]
            assert [prefix + s for s in suffixes] == prompts, "prefix + suffix must be the whole prompt"
            times["shared prefix, batched"] = []
        label_logprobs(model, tok, prompts[0], labels)  # warm-up
        for _ in range(args.rounds):
            slow, t = timed(lambda: torch.stack([label_logprobs_per_label(model, tok, p, labels) for p in prompts]))
            times["per label"].append(t)
            fast, t = timed(lambda: torch.stack([label_logprobs(model, tok, p, labels) for p in prompts]))
            times["shared cache"].append(t)
            batched, t = timed(label_logprobs_many, model, tok, prompts, labels, batch_size=args.batch_size,
                               progress=False)
            times["shared cache, batched"].append(t)
            gaps = [(fast - slow).abs().max().item(), (batched - slow).abs().max().item()]
            if prefix_arm:
                shared, t = timed(label_logprobs_after_prefix, model, tok, prefix, suffixes, labels,
                                  batch_size=args.batch_size)
                times["shared prefix, batched"].append(t)
                gaps.append((shared - slow).abs().max().item())
            gap = max(gaps)
            assert gap < 1e-3, f"{name}: the arms disagree by {gap} nats"
        rate = {arm: len(prompts) / statistics.median(ts) for arm, ts in times.items()}
        rows.append((name, n_tokens, label_tokens, rate, gap))

    print("\n| template | prompt tokens (mean) | label tokens | per label (ex/s) | shared cache (ex/s) | ratio | "
          "shared, batched (ex/s) | ratio | shared prefix, batched (ex/s) | vs shared, batched | max gap (nats) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, n_tokens, label_tokens, rate, gap in rows:
        base, batched = rate["per label"], rate["shared cache, batched"]
        prefix_rate = rate.get("shared prefix, batched")
        prefix_cells = f"{prefix_rate:.2f} | {prefix_rate / batched:.2f}x" if prefix_rate else "- | -"
        print(f"| {name} | {n_tokens:.0f} | {label_tokens} | {base:.2f} | {rate['shared cache']:.2f} | "
              f"{rate['shared cache'] / base:.2f}x | {batched:.2f} | {batched / base:.2f}x | {prefix_cells} | "
              f"{gap:.1e} |")

    texts = [p.text for p in split.train[:args.feature_passages]]
    layers = [model.config.num_hidden_layers // 2, model.config.num_hidden_layers]
    hidden_state_features(model, tok, texts[:4], layers, progress=False)  # warm-up
    seconds = []
    for _ in range(args.rounds):
        _, t = timed(hidden_state_features, model, tok, texts, layers, batch_size=16, progress=False)
        seconds.append(t)
    n_tok = sum(min(256, len(tok(t, add_special_tokens=False)["input_ids"])) for t in texts) / len(texts)
    print(f"\nfeature extraction: {len(texts)} passages (mean {n_tok:.0f} tokens), layers {layers}, batch 16: "
          f"{len(texts) / statistics.median(seconds):.1f} passages/s (median of {args.rounds})")


if __name__ == "__main__":
    main()
