"""Checks for chapter 04's exercises (scaling laws): a Llama-style parameter count, the compute a fitted Chinchilla
law needs to reach a target loss, and the effective size of repeated data.

The package computes none of these answers (``course_utils.scaling.compute`` counts the course GPT, not a Llama;
``ChinchillaFit`` gives the optimal split of a budget and its loss, not the budget for a loss), so the learner's
code is the answer. Each check computes the expected value itself (with ``ChinchillaFit`` for a law's optimal loss at
a budget) after calling the learner's code (so no local of the check holds it meanwhile), with its own reference
switched off while that code runs, and fails
through :mod:`course_utils.checks`, whose messages never show the expected value. ``tests/test_exercises_ch04.py``
feeds every check the reference solution, a correct answer in another form, and likely wrong answers.

References: H. Touvron et al., "Llama 2", 2023, and A. Q. Jiang et al., "Mistral 7B", 2023 (the configurations);
J. Hoffmann et al., "Training Compute-Optimal Large Language Models", 2022, and T. Besiroglu et al., "Chinchilla
Scaling: A replication attempt", 2024 (the fitted constants); N. Muennighoff et al., "Scaling Data-Constrained
Language Models", 2023 (effective data under repetition, R* = 15.4).
"""

from __future__ import annotations

import math
from typing import Any, Callable

from course_utils import checks
from course_utils.scaling.fit import ChinchillaFit

LLAMA_CONFIGS = {  # name -> the fields of a transformers LlamaConfig / MistralConfig that fix the parameter count
    "SmolLM2-135M": dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, tie_word_embeddings=True),
    "Llama-2-7B": dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                       num_attention_heads=32, num_key_value_heads=32, tie_word_embeddings=False),
    "Mistral-7B": dict(vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                       num_attention_heads=32, num_key_value_heads=8, tie_word_embeddings=False),
    "a toy config": dict(vocab_size=1000, hidden_size=64, intermediate_size=172, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True),
}

PUBLISHED_FITS = {  # L(N, D) = E + A / N^alpha + B / D^beta, loss in nats per token of each paper's tokenizer
    "Hoffmann et al. 2022": dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28),
    "Besiroglu et al. 2024": dict(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658),
}


def _llama_reference(c: dict) -> int:
    head_dim = c["hidden_size"] // c["num_attention_heads"]
    shapes = [  # every weight tensor of one layer, as (rows, columns)
        (c["num_attention_heads"] * head_dim, c["hidden_size"]),  # q_proj
        (c["num_key_value_heads"] * head_dim, c["hidden_size"]),  # k_proj
        (c["num_key_value_heads"] * head_dim, c["hidden_size"]),  # v_proj
        (c["hidden_size"], c["num_attention_heads"] * head_dim),  # o_proj
        (c["intermediate_size"], c["hidden_size"]), (c["intermediate_size"], c["hidden_size"]),  # gate, up
        (c["hidden_size"], c["intermediate_size"]),  # down
        (1, c["hidden_size"]), (1, c["hidden_size"]),  # input and post-attention RMSNorm gains
    ]
    layer = sum(rows * cols for rows, cols in shapes)
    heads = 1 if c["tie_word_embeddings"] else 2
    return c["num_hidden_layers"] * layer + c["hidden_size"] + heads * c["vocab_size"] * c["hidden_size"]


def _ready_made_counts() -> tuple[Callable, ...]:
    """What could count the parameters for the learner: this module's reference, chapter 11's ``ModelShape``, and
    building a torch module with parameters (a transformers Llama on the meta device costs nothing and counts
    exactly; every ``nn.Parameter`` a module creates goes through ``Module.register_parameter``)."""
    import torch

    from course_utils.parallel.memory import ModelShape

    return (_llama_reference, ModelShape.n_params, ModelShape.block_params, torch.nn.Module.register_parameter)


def check_llama_parameter_count(fn: Callable[[dict], Any]) -> None:
    """``fn(config) -> int``: total parameters of a Llama-style decoder with that configuration."""
    hint = ("per layer: q and o are hidden x hidden, k and v have num_key_value_heads x head_dim outputs; the MLP has "
            "three matrices (gate, up, down); two RMSNorm gain vectors per layer and one at the end; no biases; the "
            "token embedding is also the output head when tie_word_embeddings is True")
    for name, config in LLAMA_CONFIGS.items():
        with checks.package_functions_switched_off(*_ready_made_counts()):
            answer = checks.one_element(name, fn(dict(config)), hint)  # a (1,) array or tensor is one number
        try:
            value = int(answer)
        except (TypeError, ValueError):
            raise AssertionError(f"{name}: expected an int, got {type(answer).__name__}. {hint}") from None
        if value != answer:
            raise AssertionError(f"{name}: expected a whole number of parameters, got {answer!r}. {hint}")
        checks.check_equal(f"parameter count of {name}", value, _llama_reference(config), hint=hint)


def _compute_reference(fit: dict, target: float) -> float:
    law = ChinchillaFit(**fit, objective=0.0)
    lo, hi = 0.0, 200.0  # natural log of C
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if float(law.optimal_loss(math.exp(mid))[0]) > target else (lo, mid)
    return math.exp(hi)


def check_compute_to_reach(fn: Callable[[dict, float], Any]) -> None:
    """``fn(fit, target_loss) -> C``: the least compute (FLOPs) at which the compute-optimal model of ``fit`` reaches
    ``target_loss``; a ValueError for a target at or below the irreducible loss E."""
    hint = ("for each C the best model is the compute-optimal (N*, D*) of the fit; its loss falls as C grows, so "
            "search C (in log space) until that loss equals the target, to within 0.2% (a coarse grid of C misses it: "
            "narrow it down by bisection or a root finder)")
    cases = [(f"loss {target} under {name}", dict(PUBLISHED_FITS[name]), target)
             for name, target in (("Hoffmann et al. 2022", 2.5), ("Hoffmann et al. 2022", 2.0),
                                  ("Besiroglu et al. 2024", 2.2))]
    toy = dict(E=1.0, A=30.0, B=60.0, alpha=0.5, beta=0.4)
    cases.append(("loss 1.5 under a made-up fit", toy, 1.5))
    # reachable targets close to E: a search with a fixed upper bracket (or a refusal of targets "too close" to E)
    # must still answer; about 3.3e18 and 2.0e37 FLOPs (beyond any practical cap such as 1e25 or 1e30, within
    # float32's range, far below the e^200 searched here)
    cases += [("loss E + 0.01 under a made-up fit", toy, 1.01),
              ("loss E + 0.002 under Hoffmann et al. 2022", dict(PUBLISHED_FITS["Hoffmann et al. 2022"]), 1.692)]
    for what, fit, target in cases:
        try:
            with checks.package_functions_switched_off(_compute_reference):
                answer = fn(dict(fit), target)
        except ValueError:
            raise AssertionError(f"compute for {what}: your function raised ValueError, but this target is above E, "
                                 f"so some budget reaches it (however large). {hint}") from None
        expected = _compute_reference(fit, target)  # after the learner's call: no local holds it while it runs
        checks.check_close(f"compute for {what}", answer, expected, atol=0.0, rtol=2e-3, hint=hint)
    for target, where in ((toy["E"], "at"), (toy["E"] - 0.1, "below")):
        refusal = f"a target {where} the irreducible loss E is unreachable at any compute: raise ValueError"
        try:
            with checks.package_functions_switched_off(_compute_reference):
                fn(dict(toy), target)
        except ValueError:
            continue
        except Exception as error:  # a closed form's own ZeroDivisionError at target == E, say
            said = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            raise AssertionError(f"{refusal}; your function raised {said}") from None
        raise AssertionError(refusal)
    checks.passed("targets at and below E are refused with a ValueError")


def _effective_reference(tokens_seen: float, unique: float, r_star: float) -> float:
    if tokens_seen <= unique:
        return tokens_seen
    repetitions = tokens_seen / unique - 1
    return unique * (1 + r_star * (1 - math.exp(-repetitions / r_star)))


def check_effective_tokens(fn: Callable[..., Any]) -> None:
    """``fn(tokens_seen, unique_tokens, r_star=15.4) -> effective tokens`` (Muennighoff et al., 2023)."""
    hint = ("R counts repetitions beyond the first epoch (epochs - 1); less than one epoch repeats nothing, so every "
            "token seen counts")
    cases = [(0.5e6, 4.0e6, 15.4), (4.0e6, 4.0e6, 15.4), (12.0e6, 4.0e6, 15.4), (400e9, 100e9, 15.4),
             (1e12, 10e9, 15.4), (30.0, 10.0, 5.0), (10.0e6, 4.0e6, 15.4), (14.76e6, 4.6e6, 15.4),  # 2.5, 3.21 epochs
             (6.0e6, 4.0e6, 15.4)]  # 1.5 epochs: repetition starts after the first epoch, not the second
    for seen, unique, r_star in cases:
        with checks.package_functions_switched_off(_effective_reference):
            answer = fn(seen, unique, r_star)
        expected = _effective_reference(seen, unique, r_star)  # after the learner's call: no local holds it meanwhile
        checks.check_close(f"effective tokens: {seen:.3g} seen of {unique:.3g} unique, R* = {r_star}", answer,
                           expected, atol=1e-9, rtol=1e-6, hint=hint)
