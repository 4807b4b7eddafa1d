"""ZeRO: the memory per data-parallel rank when optimizer states, gradients and weights are sharded.

S. Rajbhandari, J. Rasley, O. Ruwase, Y. He, 2020, "ZeRO: Memory Optimizations Toward Training Trillion Parameter
Models". Plain data parallelism keeps a full copy of everything on each of the ``N_d`` ranks: ``(2 + 2 + K) Psi``
bytes for ``Psi`` parameters with 16-bit weights (2), 16-bit gradients (2) and ``K`` = 12 bytes of mixed-precision
Adam state (float32 master weights, momentum and variance). ZeRO shards them across the ranks in three stages:

    stage 0 (DDP)             (2 + 2 + K) Psi
    stage 1 (P_os)            2 Psi + 2 Psi + K Psi / N_d
    stage 2 (P_os+g)          2 Psi + (2 + K) Psi / N_d
    stage 3 (P_os+g+p)        (2 + 2 + K) Psi / N_d          (PyTorch FSDP's full sharding)

The paper's Figure 1 example, Psi = 7.5 B and N_d = 64: 120 GB, 31.4 GB, 16.6 GB and 1.9 GB per rank
(``tests/test_parallel_memory.py``). Sharded tensors are padded so every rank holds ``ceil(Psi / N_d)`` parameters,
as FSDP pads its flat shards. The byte sizes come from a :class:`~course_utils.parallel.memory.TrainingRecipe`
(``MIXED_ADAMW`` is the paper's 2 + 2 + 12). Left out: activations, communication buffers, the temporary gathered
weights of stage 3 (one layer at a time), CPU/NVMe offload (ZeRO-Offload, ZeRO-Infinity).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from course_utils.arguments import check_int
from course_utils.parallel.memory import MIXED_ADAMW, TrainingRecipe

ZERO_STAGES = (0, 1, 2, 3)


@dataclass(frozen=True)
class RankMemory:
    """Bytes one rank holds for weights, gradients and optimizer states (master copy included)."""
    weights: int
    gradients: int
    optimizer_states: int

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer_states


def zero_memory_per_rank(n_params: int, dp: int, stage: int, recipe: TrainingRecipe = MIXED_ADAMW) -> RankMemory:
    """Model-state bytes per rank for ``n_params`` parameters over ``dp`` data-parallel ranks at ZeRO ``stage``."""
    n_params = check_int(n_params, "n_params", minimum=1, allowed="a positive int")
    dp = check_int(dp, "dp", minimum=1, allowed="a positive int")
    if stage not in ZERO_STAGES or isinstance(stage, bool):
        raise ValueError(f"stage must be one of {ZERO_STAGES} (0 = plain data parallelism), got {stage!r}")
    if not isinstance(recipe, TrainingRecipe):
        raise TypeError(f"recipe must be a TrainingRecipe, got {type(recipe).__name__}")
    shard = math.ceil(n_params / dp)
    held = {"optimizer": shard if stage >= 1 else n_params, "gradients": shard if stage >= 2 else n_params,
            "weights": shard if stage >= 3 else n_params}
    return RankMemory(weights=held["weights"] * recipe.weight_bytes,
                      gradients=held["gradients"] * recipe.grad_bytes,
                      optimizer_states=held["optimizer"] * recipe.optimizer_state_bytes)


def zero_table(n_params: int, dps: list[int], recipe: TrainingRecipe = MIXED_ADAMW) -> list[dict]:
    """Rows ``{"dp", "stage 0", ..., "stage 3"}`` of total bytes per rank, one row per data-parallel size."""
    if not isinstance(dps, (list, tuple)) or not dps:
        raise ValueError(f"dps must be a non-empty list of data-parallel sizes, got {dps!r}")
    return [{"dp": dp, **{f"stage {s}": zero_memory_per_rank(n_params, dp, s, recipe).total for s in ZERO_STAGES}}
            for dp in dps]
