"""Reference solutions to chapter 04's exercises (scaling laws): a Llama-style parameter count, the compute needed
to reach a target loss under a fitted Chinchilla law, and the effective size of repeated data. The exercises'
questions are answered in :data:`WHY_LAW_OR_RUN` and :data:`WHY_REPETITION`."""

from __future__ import annotations

import math

from course_utils.scaling.fit import ChinchillaFit


def llama_parameter_count(config: dict) -> int:
    """Total parameters of a Llama-architecture decoder (no biases, RMSNorm, SwiGLU MLP, grouped-query attention)."""
    d, ff, V = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    head_dim = d // config["num_attention_heads"]
    kv = config["num_key_value_heads"] * head_dim
    attention = d * d + 2 * d * kv + d * d  # q, k, v, o
    mlp = 3 * d * ff  # gate, up, down
    per_layer = attention + mlp + 2 * d  # two RMSNorm gains
    embeddings = V * d * (1 if config["tie_word_embeddings"] else 2)
    return config["num_hidden_layers"] * per_layer + d + embeddings  # + the final RMSNorm


def _optimal_loss(fit: dict, compute: float) -> float:
    return float(ChinchillaFit(**fit, objective=0.0).optimal_loss(compute)[0])


def compute_to_reach(fit: dict, target_loss: float) -> float:
    """Smallest compute C (FLOPs) whose compute-optimal model reaches ``target_loss`` under ``fit``."""
    if not target_loss > fit["E"]:
        raise ValueError(f"target_loss {target_loss} is not above the irreducible loss E = {fit['E']}: unreachable")
    lo, hi = 0.0, 200.0  # log C; the optimal loss falls monotonically with C
    for _ in range(200):
        mid = (lo + hi) / 2
        if _optimal_loss(fit, math.exp(mid)) > target_loss:
            lo = mid
        else:
            hi = mid
    return math.exp(hi)


#: Exercise 2's question, answered.
WHY_LAW_OR_RUN = ('Believe the run for what it measured, and the law no further than section 6 showed it can be '
                  'trusted. The run is one seed at one budget: a second seed moved single losses by up to the '
                  "SEED_SHIFT that section 6's verdict prints: compare it with the 0.05 nats/char of the target. It "
                  'is also not known to be the compute-optimal model for its budget, so if it reached the target, '
                  'its budget is, up '
                  'to seed noise, an upper bound on what the target costs, since the compute-optimal model does at '
                  'least as well at equal compute, and a law that asks for far more is wrong there; if it did not, '
                  "the run says little about the cost. The law's answer is an extrapolation from a small, short-"
                  'trained sweep, worth no more than its own prediction of that run earned (did it beat the naive '
                  'forecast?), and it leans on the floor E: as the target nears E the compute needed grows without '
                  'bound (your function raises ValueError at or below E), so where section 4 found E unpinned, the '
                  'floors the data allow can move the answer a long way (call your function with h.as_dict() for each'
                  ' held-floor fit h in kept_fits to see how far). Where the two disagree, the run wins at its own '
                  'budget, and neither says much far beyond it.')


def effective_tokens(tokens_seen: float, unique_tokens: float, r_star: float = 15.4) -> float:
    """Muennighoff et al. (2023): repeated tokens are worth less; ``U + U R* (1 - exp(-R / R*))`` with R repetitions."""
    if tokens_seen <= unique_tokens:
        return float(tokens_seen)
    repetitions = tokens_seen / unique_tokens - 1
    return unique_tokens + unique_tokens * r_star * (1 - math.exp(-repetitions / r_star))


#: Exercise 3's question, answered.
WHY_REPETITION = ("It depends on how many passes over the training text the longest run made, which section 5's list "
                  "prints (D.max() / train_chars epochs). At one pass or less nothing is repeated and D' = D. Above, "
                  "with R = epochs - 1, the share of tokens lost, 1 - D'/D, is close to R^2 / (2 R* (1 + R)) while R "
                  "is small against R* = 15.4: by the formula, 2 passes are worth about 1.6% less than fresh data, 4 "
                  "passes about 7% less and 8 passes about 17% less. So a few passes cost a few percent of the "
                  "longest run's tokens; a profile that trains on a short text for many passes loses more. In loss, "
                  "losing a share s of D raises the fitted data term B / D^beta by about beta s of itself (the "
                  "closing table prints this fit's beta). Two caveats: R* was fitted on models far larger than ours, "
                  "trained on BPE tokens of web text, not on characters of Shakespeare, so take the formula as an "
                  "order of magnitude; and neither fitted form knows of repetition, so the longest runs count more "
                  "fresh tokens than they saw, which, if anything, makes the fitted fall with D (beta) too shallow.")
