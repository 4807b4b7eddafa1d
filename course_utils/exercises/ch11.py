"""Checks for chapter 11's exercises (training beyond one device): the schedule of a ring all-reduce, the memory per
rank of ZeRO's three stages and the smallest number of ranks at which each stage fits a GPU, and a tensor-parallel
MLP split over ranks by hand.

Each check computes the expected value itself, written differently from the reference solution
(:mod:`course_utils.solutions.ch11`): the ring schedule is *replayed* on random tensors (any schedule that leaves the
full sum on every rank in 2(p - 1) steps of one chunk per rank to its right-hand neighbour passes, not one fixed
answer), ZeRO's bytes are summed part by part from a table of which parts each stage shards (and the smallest number
of ranks is solved from the same table in exact integer arithmetic), and the tensor-parallel
partials are computed with ``einsum`` in float64. Failures go through :mod:`course_utils.checks`, whose messages
never show the expected value; ``tests/test_exercises_ch11.py`` feeds every check the reference solution, correct
answers in other forms and the likely wrong answers.

The package has the ZeRO arithmetic and the tensor-parallel layers (:mod:`course_utils.parallel`); while the
learner's function runs those are switched off by :func:`course_utils.checks.package_functions_switched_off`,
and so are this module's own references.

Conventions the exercise text states.
Ring all-reduce (Patarasuk & Yuan 2009; the algorithm behind NCCL's and Horovod's ring): p ranks in a ring, each
holds a tensor cut into p equal chunks numbered 0..p-1. ``ring_schedule(p)`` returns 2(p - 1) steps; step s is a
list of p chunk indices, entry r being the chunk that rank r sends to rank (r + 1) % p at that step. All p sends of a
step happen at once (each receiver sees the sender's value from before the step). In the first p - 1 steps
(reduce-scatter) the receiver ADDS the received chunk to its own; in the last p - 1 (all-gather) it REPLACES its
chunk with the received one. Afterwards every rank must hold the sum over ranks of the whole tensor.
ZeRO (Rajbhandari et al. 2020): mixed-precision Adam keeps 2 bytes of 16-bit weights, 2 of 16-bit gradients and
K = 12 of optimizer states (fp32 master weights, momentum, variance) per parameter; stage 1 shards the optimizer
states over the N_d data-parallel ranks, stage 2 also the gradients, stage 3 also the weights; stage 0 is plain data
parallelism. ``zero_bytes_per_rank(n_params, n_ranks, stage)`` returns the bytes one rank holds for these three
(activations and buffers left out), as a number. ``smallest_ranks_that_fit(n_params, gpu_bytes)`` returns, for
stages 0, 1, 2, 3 in that order (a list or tuple of four entries, or a dict keyed by stage), the smallest whole
N_d >= 1 at which those bytes are at most ``gpu_bytes``, or None for a stage that fits at no N_d (the part it does not
shard is already at least ``gpu_bytes``). One case is an exact tie (at the answer the bytes equal ``gpu_bytes``), where
"at most" and "less than" differ; the others are far from whole-number ratios, so a float ceiling is safe on them.
Tensor-parallel MLP (Shoeybi et al. 2019, Megatron-LM): y = GELU(x W_fc^T) W_proj^T with ``w_fc`` of shape (F, C)
and ``w_proj`` of shape (C, F) (``nn.Linear``'s (out, in) layout, no biases, exact GELU). With world size p, rank r
owns rows r*F/p .. (r+1)*F/p - 1 of ``w_fc`` (a column-parallel layer: a slice of the hidden features) and the same
columns of ``w_proj`` (a row-parallel layer). ``tensor_parallel_mlp_partials(x, w_fc, w_proj, p)`` returns the p
partial outputs, one per rank, each of x's shape (B, T, C), as a list or a (p, B, T, C) tensor; the all-reduce that
sums them is the only communication of the forward pass.

Tolerances. Ring: the replay adds float64 chunks of standard normals, so the order of additions changes the sum by
~1e-15; compared within 1e-9. ZeRO: bytes are exact integers up to the division by N_d; compared within 1e-6
relative, while the likely mistakes (forgetting a part, sharding one part too many or too few) are off by 10% or more.
Smallest ranks: whole numbers compared exactly; in every case but the tie the exact ratio is at least 0.0009 away
from a whole number, so a float computation of the ceiling gives the same answer, while a floor, a number for a stage
that never fits or a search capped at any practical limit is wrong: the largest case needs more than 2**40 ranks, which
a search one rank at a time would not reach in any reasonable time (a search that doubles N_d and then bisects reaches
it in about 80 steps and passes).
Tensor parallel: float32 partials of O(1) values, each within ~1e-6 of the float64 reference; compared within 1e-4
absolute, while GELU after the sum, a split along the wrong dimension or interleaved rows are off by 0.01 or more.

Left out: checks of argument validation, of the all-gather phase's alternative orders (any valid order passes).
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from course_utils import checks
from course_utils.device import make_generator

RING_ATOL = 1e-9
ZERO_RTOL = 1e-6
TP_ATOL = 1e-4


def _package_answers() -> tuple[Callable, ...]:
    """The package's functions that answer an exercise (imported lazily: the parallel package is a higher layer), and
    this module's own references."""
    from course_utils.parallel import tensor_parallel, zero

    found = []
    for module in (zero, tensor_parallel):
        for value in vars(module).values():
            if callable(value) and getattr(value, "__module__", None) == module.__name__ and \
                    hasattr(value, "__code__") and not value.__closure__:
                found.append(value)
            elif isinstance(value, type) and value.__module__ == module.__name__:
                found += [f for f in vars(value).values() if hasattr(f, "__code__") and not f.__closure__]
    return tuple(found) + (_zero_reference, _fit_reference, _tp_reference)  # and this module's own answers


def _call(fn: Callable, *args: Any) -> Any:
    """The learner's ``fn(*args)`` with the package's answers to this chapter's exercises switched off."""
    with checks.package_functions_switched_off(*_package_answers()):
        return fn(*args)


# ---------- exercise 1: the ring all-reduce schedule ----------

RING_HINT = ("reduce-scatter: at step s, rank r passes on the chunk it has just accumulated, so that after p - 1 steps "
             "each rank holds one chunk summed over all ranks; all-gather: each rank then passes on the completed "
             "chunk it holds or has just received. Return 2(p - 1) steps of p chunk indices each")


def _whole_number(entry: Any) -> int:
    """A chunk index or a number of ranks as an int: ints, NumPy and tensor integers, and floats such as 1.0; a bool
    (Python's, NumPy's or a tensor's), a string, a fraction (1.7) or a non-finite float raises ``ValueError``
    (``int()`` would read 1.7 and True as 1)."""
    if isinstance(entry, (bool, str, bytes)) or str(getattr(entry, "dtype", "")) in ("bool", "torch.bool"):
        raise ValueError(entry)
    if isinstance(entry, int):
        return entry  # exact however large
    value = float(entry)
    if not value.is_integer():
        raise ValueError(entry)
    return int(value)


def _replay(schedule: Any, p: int, tensors: list[torch.Tensor], name: str) -> list[list[torch.Tensor]]:
    """Run the learner's schedule on per-rank tensors; every malformed step is a clear failure."""
    try:
        steps = [[_whole_number(c) for c in step] for step in schedule]
    except (TypeError, ValueError):
        raise AssertionError(f"{name}: expected a list of steps, each a list of {p} whole-number chunk indices. "
                             f"{RING_HINT}") from None
    if len(steps) != 2 * (p - 1):
        raise AssertionError(f"{name}: {len(steps)} steps; a ring all-reduce over {p} ranks takes exactly "
                             f"2(p - 1) of them. {RING_HINT}")
    chunks = [list(t.double().chunk(p)) for t in tensors]  # chunks[rank][index]
    for s, step in enumerate(steps):
        if len(step) != p or not all(0 <= c < p for c in step):
            raise AssertionError(f"{name}: step {s} must give one chunk index in 0..{p - 1} for each of the {p} "
                                 f"ranks. {RING_HINT}")
        sent = [chunks[r][c].clone() for r, c in enumerate(step)]  # all sends of a step happen at once
        for r, c in enumerate(step):
            receiver = (r + 1) % p
            chunks[receiver][c] = chunks[receiver][c] + sent[r] if s < p - 1 else sent[r]
    return chunks


def _ring_cases() -> list[tuple[str, int, int]]:
    return [("2 ranks", 2, 8), ("3 ranks", 3, 12), ("4 ranks", 4, 8), ("5 ranks", 5, 20), ("8 ranks", 8, 16)]


def check_ring_schedule(fn: Callable[[int], Any]) -> None:
    """Exercise statement: write ``ring_schedule(p)``: 2(p - 1) steps, each a list of the p chunk indices that rank
    r sends to rank (r + 1) % p; the first p - 1 steps add, the last p - 1 replace (see the module docstring)."""
    g = make_generator(110, "cpu")
    for label, p, numel in _ring_cases():
        name = f"ring all-reduce, {label}"
        tensors = [torch.randn(numel, generator=g, dtype=torch.float64) for _ in range(p)]
        chunks = _replay(_call(fn, p), p, tensors, name)
        total = torch.stack(tensors).sum(0)
        wrong = [r for r in range(p) if not torch.allclose(torch.cat(chunks[r]), total, atol=RING_ATOL, rtol=0)]
        if wrong:
            raise AssertionError(f"{name}: after your schedule, {len(wrong)} of {p} ranks do not hold the sum over all "
                                 f"ranks. {RING_HINT}")
        checks.passed(name)


# ---------- exercise 2: ZeRO's memory per rank ----------

ZERO_HINT = ("per parameter: 2 bytes of 16-bit weights, 2 of 16-bit gradients, 12 of fp32 optimizer states (master "
             "weights, momentum, variance); stage 1 divides the optimizer states by the number of ranks, stage 2 also "
             "the gradients, stage 3 also the weights; stage 0 divides nothing")

# which of (weights, gradients, optimizer states) each stage shards over the data-parallel ranks
_SHARDED = {0: (False, False, False), 1: (False, False, True), 2: (False, True, True), 3: (True, True, True)}
_BYTES = (2, 2, 12)


def _zero_reference(n_params: int, n_ranks: int, stage: int) -> float:
    return float(sum(n_params * b / (n_ranks if sharded else 1) for b, sharded in zip(_BYTES, _SHARDED[stage])))


def _zero_cases() -> list[tuple[int, int, int]]:
    return [(n, nd, stage) for n, nd in ((7_500_000_000, 64), (70_000_000_000, 8), (134_515_008, 2))
            for stage in (0, 1, 2, 3)]


def check_zero_bytes(fn: Callable[[int, int, int], Any]) -> None:
    """Exercise statement: write ``zero_bytes_per_rank(n_params, n_ranks, stage)``, the bytes of weights, gradients
    and optimizer states one data-parallel rank holds under ZeRO stage 0, 1, 2 or 3."""
    for n, nd, stage in _zero_cases():
        name = f"ZeRO stage {stage}, {n / 1e9:.3g}B parameters on {nd} ranks"
        answer = _call(fn, n, nd, stage)
        checks.check_close(name, answer, _zero_reference(n, nd, stage), atol=0.0, rtol=ZERO_RTOL, hint=ZERO_HINT)


# ---------- exercise 2b: the smallest number of ranks at which each stage fits ----------

FIT_HINT = ("a stage fits N_d ranks when the part it does not shard plus the sharded part divided by N_d is at most "
            "gpu_bytes. The sharded part shrinks towards zero as N_d grows and the rest never does, so a stage whose "
            "unsharded part alone is gpu_bytes or more never fits (None); otherwise solve the inequality for N_d and "
            "round up to a whole number of ranks, at least one (a search up to a fixed limit stops too early, and one "
            "that tries one rank at a time would not finish the largest case)")


def _fit_reference(n_params: int, gpu_bytes: int) -> list[int | None]:
    """Exact integers: kept + spread / N_d <= gpu_bytes, i.e. N_d >= spread / (gpu_bytes - kept)."""
    answer: list[int | None] = []
    for stage in sorted(_SHARDED):
        kept = n_params * sum(b for b, sharded in zip(_BYTES, _SHARDED[stage]) if not sharded)
        spread = n_params * sum(b for b, sharded in zip(_BYTES, _SHARDED[stage]) if sharded)
        if kept + spread <= gpu_bytes:
            answer.append(1)
        elif kept >= gpu_bytes:
            answer.append(None)
        else:
            answer.append(-(-spread // (gpu_bytes - kept)))  # ceiling of a ratio of integers
    return answer


def _fit_cases() -> list[tuple[str, int, int]]:
    # (label, parameters, bytes per GPU): Llama-2-70B and -7B, SmolLM2-135M (all fit on one rank), a stage 1 that
    # never fits while stage 2 does, an exact tie, a stage 1 that needs thousands of ranks, a stage 1 whose unsharded
    # part is exactly the budget (None: no rank count leaves room), a stage 3 that needs more than a million, and,
    # last, one that needs more than 2**40 (absurd hardware, but no search one rank at a time finishes it and any
    # practical cap stops too early; doubling and bisection reach it in about 80 steps). Every
    # case has the same answer whether shards are fractional or rounded up to whole parameters (as
    # zero_memory_per_rank pads them): the last one leaves each rank 437 parameters' 16 bytes, never a fraction of one
    return [("Llama-2-70B, 80 GB per GPU", 68_976_648_192, 80 * 10**9),
            ("Llama-2-7B, 40 GB per GPU", 6_738_415_616, 40 * 10**9),
            ("SmolLM2-135M, 24 GB per GPU", 134_515_008, 24 * 10**9),
            ("7.5B parameters, 25 GB per GPU", 7_500_000_000, 25 * 10**9),
            ("7.5B parameters, 24 GB per GPU", 7_500_000_000, 24 * 10**9),  # stage 3: exactly 24 GB at 5 ranks
            ("7.5B parameters, 30.007 GB per GPU", 7_500_000_000, 30_007_000_000),
            ("0.7B parameters, 2.8 GB per GPU", 7 * 10**8, 28 * 10**8),  # stage 1 keeps exactly 2.8 GB unsharded
            ("Llama-2-70B, 1 MB per rank", 68_976_648_192, 10**6),  # stage 3: 1,103,627 ranks
            ("10^15 parameters, 6,992 bytes per rank", 10**15, 16 * 437)]  # stage 3: 2,288,329,519,451 (> 2**41)


def _fit_entries(name: str, answer: Any) -> list[int | None]:
    """The learner's four entries as ints or None, or a clear failure (the message shows only the learner's value)."""
    if isinstance(answer, dict):
        if set(answer) != set(_SHARDED):
            raise AssertionError(f"{name}: a dict answer needs exactly the stages as keys. {FIT_HINT}")
        answer = [answer[stage] for stage in sorted(_SHARDED)]
    if isinstance(answer, torch.Tensor):
        answer = answer.tolist()
    try:
        entries = list(answer)
    except TypeError:
        raise AssertionError(f"{name}: expected one entry per stage (a list, a tuple or a dict), got "
                             f"{type(answer).__name__}. {FIT_HINT}") from None
    if len(entries) != len(_SHARDED):
        raise AssertionError(f"{name}: {len(entries)} entries, expected one per ZeRO stage. {FIT_HINT}")
    out: list[int | None] = []
    for stage, entry in enumerate(entries):
        if entry is None:
            out.append(None)
            continue
        try:
            value = _whole_number(entry)
        except (TypeError, ValueError):
            value = 0
        if value < 1:
            raise AssertionError(f"{name}, stage {stage}: expected a whole number of ranks (at least one), or None "
                                 f"for a stage that never fits; got {entry!r}. {FIT_HINT}")
        out.append(value)
    return out


def check_smallest_ranks(fn: Callable[[int, int], Any]) -> None:
    """Exercise statement: write ``smallest_ranks_that_fit(n_params, gpu_bytes)``: for ZeRO stages 0 to 3 the
    smallest number of data-parallel ranks at which the states of one rank take at most ``gpu_bytes``, None where no
    number of ranks is enough."""
    for label, n, gpu_bytes in _fit_cases():
        name = f"smallest ranks that fit, {label}"
        got = _fit_entries(name, _call(fn, n, gpu_bytes))
        for stage, (mine, expected) in enumerate(zip(got, _fit_reference(n, gpu_bytes))):
            if mine != expected:
                raise AssertionError(f"{name}, stage {stage}: got {mine!r}, which is not right. {FIT_HINT}")
        checks.passed(name)


# ---------- exercise 3: a tensor-parallel MLP by hand ----------

TP_HINT = ("rank r takes a contiguous block of F/p ROWS of w_fc (its slice of the hidden features) and the SAME block "
           "of COLUMNS of w_proj; it applies GELU to its own slice (GELU works feature by feature, so no communication "
           "is needed before it) and returns its partial (B, T, C) output; the partials must sum to the full MLP. "
           "The GELU is the exact one (erf, F.gelu's default), not the tanh approximation")


def _tp_cases() -> list[tuple[str, int, int, int, int, int]]:
    return [("2 ranks, C = 8, F = 32", 2, 2, 3, 8, 32), ("4 ranks, C = 6, F = 24", 4, 1, 5, 6, 24),
            ("3 ranks, C = 4, F = 12", 3, 2, 2, 4, 12)]


def _tp_reference(x: torch.Tensor, w_fc: torch.Tensor, w_proj: torch.Tensor, p: int) -> torch.Tensor:
    f = w_fc.shape[0] // p
    parts = []
    for r in range(p):
        hidden = torch.einsum("btc,fc->btf", x.double(), w_fc[r * f:(r + 1) * f].double())  # (B, T, F/p)
        hidden = 0.5 * hidden * (1 + torch.erf(hidden / 2 ** 0.5))  # exact GELU
        parts.append(torch.einsum("btf,cf->btc", hidden, w_proj[:, r * f:(r + 1) * f].double()))  # (B, T, C)
    return torch.stack(parts)  # (p, B, T, C)


def check_tensor_parallel_mlp(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], Any]) -> None:
    """Exercise statement: write ``tensor_parallel_mlp_partials(x, w_fc, w_proj, p)``, the p per-rank partial outputs
    of a column-then-row parallel MLP (see the module docstring for the layout)."""
    g = make_generator(111, "cpu")
    for label, p, B, T, C, F in _tp_cases():
        name = f"tensor-parallel MLP, {label}"
        x = torch.randn(B, T, C, generator=g)
        w_fc, w_proj = torch.randn(F, C, generator=g) / C ** 0.5, torch.randn(C, F, generator=g) / F ** 0.5
        answer = _call(fn, x.clone(), w_fc.clone(), w_proj.clone(), p)
        if isinstance(answer, (list, tuple)):
            if len(answer) != p:
                raise AssertionError(f"{name}: {len(answer)} partial outputs, expected one per rank. {TP_HINT}")
            answer = torch.stack([checks.finite_float_tensor(name, a, TP_HINT) for a in answer])
        got = checks.finite_float_tensor(name, answer, TP_HINT)
        expected = _tp_reference(x, w_fc, w_proj, p)
        if tuple(got.shape) != tuple(expected.shape):
            raise AssertionError(f"{name}: shape {tuple(got.shape)}, expected (p, B, T, C) = "
                                 f"{tuple(expected.shape)}. {TP_HINT}")
        checks.check_close(name, got, expected, atol=TP_ATOL, rtol=0.0, hint=TP_HINT)
