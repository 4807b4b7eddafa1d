"""A parallelism planner: which data x tensor x pipeline x context split of ``n_gpus`` fits a model in GPU memory.

For every factorisation ``dp * tp * pp * cp = n_gpus`` that the model allows (``tp`` divides the query and
key/value heads and stays within one node, where GPUs talk over NVLink; ``pp`` divides the layers; ``cp`` divides
the sequence; ``dp`` times the micro-batch divides the global batch) we add up the memory of the busiest GPU, the
first pipeline stage:

* model states (:mod:`course_utils.parallel.zero`): the stage's share of the blocks split ``tp`` ways plus the
  input embedding (split ``tp`` ways over the vocabulary; with ``pp = 1`` also the final norm and an untied output
  head), with ZeRO optimizer sharding (stage 1 by default) over the ``dp * cp`` ranks that hold the same weights
  and average their gradients, counted as the ZeRO paper counts mixed precision: 2 + 2 + 12/d bytes per parameter
  (Megatron-LM's distributed optimizer, with bf16 weights and float32 main gradients, keeps 6 + 12/d);
* activations (:mod:`course_utils.parallel.activations`): ``n_layer / pp`` blocks at sequence length ``s / cp``,
  divided by ``tp`` (tensor + sequence parallelism, V. Korthikanti et al., 2022), attention through a
  FlashAttention-style kernel (no ``s^2`` scores), times the micro-batches in flight on the first stage under the
  1F1B schedule, ``min(pp, m)`` (:mod:`course_utils.parallel.pipeline`). With full recomputation each block keeps
  its input only, plus one block's full activations while it is recomputed.

:func:`plan_parallelism` returns every valid plan as a :class:`Plan` (sortable: by total bytes), :func:`best_plans`
the few that fit with the least model parallelism (data parallelism communicates least per step, so a plan with
smaller ``tp * pp * cp`` is preferred), which is what the chapter's widget shows, and :func:`draw_plans` their
memory as stacked bars. Memory is in decimal GB (1e9 bytes), as in the ZeRO paper; an "80 GB" H100 holds about 80 GiB
(about 85 GB), of which the CUDA context, NCCL buffers and fragmentation take several, so 80e9 is a fair usable budget.

Left out: the uneven last stage, communication buffers and time, interleaved pipelines, expert parallelism, the
logits of the output layer, and everything about speed: a plan that fits is not necessarily a fast one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from course_utils.arguments import check_int, check_real

from course_utils.parallel.activations import RECOMPUTE, layer_activation_bytes
from course_utils.parallel.memory import MIXED_ADAMW, ModelShape, TrainingRecipe
from course_utils.parallel.zero import ZERO_STAGES, zero_memory_per_rank

GB = 1e9
PARTS = ("weights", "gradients", "optimizer_states", "activations")


@dataclass(frozen=True, order=True)
class Plan:
    """Memory per GPU (bytes) of the first pipeline stage for one split; ordered by ``total`` first."""
    total: float
    dp: int
    tp: int
    pp: int
    cp: int
    weights: float = field(compare=False)
    gradients: float = field(compare=False)
    optimizer_states: float = field(compare=False)
    activations: float = field(compare=False)
    micro_batches: int = field(compare=False)  # m, per pipeline per optimizer step
    in_flight: int = field(compare=False)  # micro-batches whose activations stage 0 holds at once
    fits: bool = field(compare=False)

    @property
    def label(self) -> str:
        return f"dp{self.dp} tp{self.tp} pp{self.pp} cp{self.cp}"

    def parts_gb(self) -> dict[str, float]:
        return {part: getattr(self, part) / GB for part in PARTS}


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _stage_params(shape: ModelShape, tp: int, pp: int) -> int:
    blocks = shape.n_layer // pp * shape.block_params()
    embedding = (shape.vocab_size + shape.positions) * shape.hidden
    if pp == 1:
        embedding += shape.norm_params() + (0 if shape.tied_embeddings else shape.vocab_size * shape.hidden)
    return -(-(blocks + embedding) // tp)  # ceil: shards are padded to equal size


def _stage_activations(shape: ModelShape, seq_len: int, micro_batch: int, tp: int, pp: int, cp: int,
                       in_flight: int, recompute: str, bytes_per_value: int) -> float:
    def per_layer(mode: str) -> float:
        return layer_activation_bytes(shape, seq_len // cp, micro_batch, bytes_per_value, flash_attention=True,
                                      tp=tp, recompute=mode)["total"]
    layers = shape.n_layer // pp
    kept = in_flight * layers * per_layer(recompute)
    return kept + (per_layer("none") if recompute == "full" else 0.0)  # the block being recomputed


def _validate(shape, seq_len, micro_batch, global_batch, n_gpus, gpu_memory_gb, gpus_per_node, zero_stage,
              recipe, recompute) -> tuple:
    """The sizes as Python ints and ``gpu_memory_gb`` as a float (numpy numbers accepted), or an error."""
    if not isinstance(shape, ModelShape):
        raise TypeError(f"shape must be a ModelShape (e.g. LLAMA2_70B), got {type(shape).__name__}")
    seq_len, micro_batch, global_batch, n_gpus, gpus_per_node = (check_int(value, name, minimum=1) for name, value in (
        ("seq_len", seq_len), ("micro_batch", micro_batch), ("global_batch", global_batch), ("n_gpus", n_gpus),
        ("gpus_per_node", gpus_per_node)))
    if global_batch % micro_batch:
        raise ValueError(f"global_batch ({global_batch}) must be a multiple of micro_batch ({micro_batch})")
    gpu_memory_gb = check_real(gpu_memory_gb, "gpu_memory_gb", minimum=0, low_open=True, finite=False,
                               allowed="a positive number")  # inf accepted
    if zero_stage not in ZERO_STAGES or isinstance(zero_stage, bool):
        raise ValueError(f"zero_stage must be one of {ZERO_STAGES}, got {zero_stage!r}")
    if not isinstance(recipe, TrainingRecipe):
        raise TypeError(f"recipe must be a TrainingRecipe, got {type(recipe).__name__}")
    if recompute not in RECOMPUTE:
        raise ValueError(f"recompute must be one of {RECOMPUTE}, got {recompute!r}")
    return seq_len, micro_batch, global_batch, n_gpus, gpu_memory_gb, gpus_per_node


def _valid_splits(shape: ModelShape, seq_len: int, micro_batch: int, global_batch: int, n_gpus: int,
                  gpus_per_node: int):
    for tp in _divisors(n_gpus):
        if tp > gpus_per_node or shape.n_head % tp or shape.n_kv_head % tp:
            continue
        for pp in _divisors(n_gpus // tp):
            if shape.n_layer % pp:
                continue
            for cp in _divisors(n_gpus // (tp * pp)):
                dp = n_gpus // (tp * pp * cp)
                if seq_len % cp == 0 and global_batch % (dp * micro_batch) == 0:
                    yield dp, tp, pp, cp


def plan_parallelism(shape: ModelShape, seq_len: int, micro_batch: int, global_batch: int, n_gpus: int,
                     gpu_memory_gb: float = 80.0, gpus_per_node: int = 8, zero_stage: int = 1,
                     recipe: TrainingRecipe = MIXED_ADAMW, recompute: str = "none",
                     bytes_per_value: int = 2) -> list[Plan]:
    """Every valid (dp, tp, pp, cp) for ``n_gpus`` with the memory of its busiest GPU, smallest total first.

    ``global_batch`` and ``micro_batch`` are in sequences; each data-parallel replica runs
    ``m = global_batch / (dp * micro_batch)`` micro-batches per optimizer step through its pipeline."""
    seq_len, micro_batch, global_batch, n_gpus, gpu_memory_gb, gpus_per_node = _validate(
        shape, seq_len, micro_batch, global_batch, n_gpus, gpu_memory_gb, gpus_per_node, zero_stage, recipe, recompute)
    plans = []
    for dp, tp, pp, cp in _valid_splits(shape, seq_len, micro_batch, global_batch, n_gpus, gpus_per_node):
        states = zero_memory_per_rank(_stage_params(shape, tp, pp), dp * cp, zero_stage, recipe)
        m = global_batch // (dp * micro_batch)
        in_flight = min(pp, m)
        activations = _stage_activations(shape, seq_len, micro_batch, tp, pp, cp, in_flight, recompute,
                                         bytes_per_value)
        total = states.total + activations
        plans.append(Plan(total, dp, tp, pp, cp, states.weights, states.gradients, states.optimizer_states,
                          activations, m, in_flight, total <= gpu_memory_gb * GB))
    if not plans:
        raise ValueError(
            f"no split of {n_gpus} GPUs is valid for {shape.name}: need tp dividing n_head={shape.n_head} and "
            f"n_kv_head={shape.n_kv_head} with tp <= gpus_per_node={gpus_per_node}, pp dividing "
            f"n_layer={shape.n_layer}, cp dividing seq_len={seq_len}, and dp * micro_batch dividing "
            f"global_batch={global_batch}")
    return sorted(plans)


def best_plans(shape: ModelShape, n_gpus: int, seq_len: int = 4096, micro_batch: int = 1,
               global_batch: int | None = None, top: int = 5, **options) -> list[Plan]:
    """The ``top`` plans that fit, least model parallelism (``tp * pp * cp``) first, then least memory; if none
    fits, the ``top`` smallest ones (check ``plan.fits``). ``global_batch`` defaults to 4 sequences per GPU."""
    top = check_int(top, "top", minimum=1)
    batch = 4 * n_gpus * micro_batch if global_batch is None else global_batch
    plans = plan_parallelism(shape, seq_len, micro_batch, batch, n_gpus, **options)
    fitting = [plan for plan in plans if plan.fits]
    if not fitting:
        return plans[:top]
    return sorted(fitting, key=lambda p: (p.tp * p.pp * p.cp, p.pp, p.total))[:top]


def draw_plans(ax, plans: list[Plan], gpu_memory_gb: float = 80.0, title: str = "", legend: bool = True) -> None:
    """Horizontal stacked bars of each plan's memory per GPU by part (GB, parts told apart by hatching as well as
    colour), with the GPU's memory as a dashed line; the legend, if any, outside the axes on the right."""
    if not plans:
        raise ValueError("plans is empty: nothing to draw")
    hatches = {"weights": "", "gradients": "//", "optimizer_states": "..", "activations": "xx"}
    left = [0.0] * len(plans)
    labels = [plan.label + ("" if plan.fits else "  (does not fit)") for plan in plans]
    for part in PARTS:
        widths = [plan.parts_gb()[part] for plan in plans]
        ax.barh(labels, widths, left=left, hatch=hatches[part], label=part.replace("_", " "), edgecolor="black")
        left = [a + b for a, b in zip(left, widths)]
    ax.axvline(gpu_memory_gb, color="black", linestyle="--", label=f"GPU memory ({gpu_memory_gb:g} GB)")
    ax.set_xlabel("memory per GPU (GB, first pipeline stage)")
    ax.invert_yaxis()
    if legend:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    if title:
        ax.set_title(title)
