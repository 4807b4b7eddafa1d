"""Pipeline parallelism: the schedule of forward and backward passes over stages, and its idle "bubble".

A model cut into ``p`` stages (consecutive layers on ``p`` devices) processes a batch split into ``m``
micro-batches. In GPipe (Y. Huang et al., 2019, "GPipe: Efficient Training of Giant Neural Networks using Pipeline
Parallelism") every stage runs all ``m`` forwards, then all ``m`` backwards; stage ``i`` waits ``i`` steps for its
first input and the pipeline drains at the end, so with equal time per forward and per backward each stage is idle
for a fraction ``(p - 1) / (m + p - 1)`` of the step: the bubble, small only when ``m >> p``.

One-forward-one-backward (1F1B; D. Narayanan et al., 2021, "Efficient Large-Scale Language Model Training on GPU
Clusters Using Megatron-LM", after PipeDream-Flush) starts each micro-batch's backward as soon as possible: same
bubble, but stage 0 holds the activations of at most ``p`` micro-batches instead of ``m``.

:func:`pipeline_schedule` simulates either schedule in unit time steps (one forward or one backward per step) and
returns it as data, a grid ``stage x time`` of ``"F3"`` / ``"B3"`` / ``""`` (idle) that a figure draws. Tests check
that the idle cells equal the formula. Left out: backward passes that take longer than forwards (the fraction is
the same when every backward takes the same multiple of a forward), interleaved stages, zero-bubble schedules,
communication time.
"""

from __future__ import annotations

from dataclasses import dataclass

from course_utils.arguments import check_int

SCHEDULES = ("gpipe", "1f1b")


def _check_sizes(p: int, m: int) -> tuple[int, int]:
    """``(p, m)`` as Python ints (numpy ints accepted), or a ValueError."""
    return (check_int(p, "p (stages)", minimum=1, allowed="a positive int"),
            check_int(m, "m (micro-batches)", minimum=1, allowed="a positive int"))


def bubble_fraction(p: int, m: int) -> float:
    """Fraction of a pipeline step each stage is idle: ``(p - 1) / (m + p - 1)``."""
    p, m = _check_sizes(p, m)
    return (p - 1) / (m + p - 1)


@dataclass(frozen=True)
class Schedule:
    """``grid[stage][time]`` is ``"F<j>"``, ``"B<j>"`` or ``""`` (idle); ``in_flight[stage]`` the most
    micro-batches whose forward is done and backward is not (activations held) at any time on that stage."""
    kind: str
    p: int
    m: int
    grid: list[list[str]]
    in_flight: list[int]

    @property
    def n_steps(self) -> int:
        return len(self.grid[0])

    def idle_fraction(self) -> float:
        cells = [cell for row in self.grid for cell in row]
        return sum(cell == "" for cell in cells) / len(cells)


def _stage_order(kind: str, p: int, m: int, stage: int) -> list[tuple[str, int]]:
    forwards = [("F", j) for j in range(m)]
    backwards = [("B", j) for j in range(m)]
    if kind == "gpipe":
        return forwards + backwards
    warmup = min(p - 1 - stage, m)  # 1F1B: warm-up forwards, then alternate, then drain the backwards
    order = forwards[:warmup]
    for j in range(warmup, m):
        order += [forwards[j], backwards[j - warmup]]
    return order + backwards[m - warmup:]


def pipeline_schedule(p: int, m: int, kind: str = "gpipe") -> Schedule:
    """Simulate ``kind`` ("gpipe" or "1f1b") on ``p`` stages and ``m`` micro-batches, one op per time step.

    An op runs at the first step when its inputs are ready: the forward of micro-batch j on stage i after the
    forward of j on stage i - 1, the backward of j on stage i after the backward of j on stage i + 1 (the last
    stage's backward after its own forward)."""
    p, m = _check_sizes(p, m)
    if kind not in SCHEDULES:
        raise ValueError(f"kind must be one of {SCHEDULES}, got {kind!r}")
    orders = [_stage_order(kind, p, m, stage) for stage in range(p)]
    done: dict[tuple[str, int, int], int] = {}  # (op, micro-batch, stage) -> time step it ran
    rows: list[list[str]] = [[] for _ in range(p)]
    position = [0] * p
    time = 0
    while any(position[s] < len(orders[s]) for s in range(p)):
        for stage in range(p):
            if position[stage] == len(orders[stage]):
                rows[stage].append("")
                continue
            op, j = orders[stage][position[stage]]
            if op == "F":
                needed = [("F", j, stage - 1)] if stage > 0 else []
            else:
                needed = [("B", j, stage + 1)] if stage < p - 1 else [("F", j, stage)]
            if all(done.get(key, time) < time for key in needed):
                done[(op, j, stage)] = time
                rows[stage].append(f"{op}{j}")
                position[stage] += 1
            else:
                rows[stage].append("")
        time += 1
    return Schedule(kind, p, m, rows, [_max_in_flight(row) for row in rows])


def _max_in_flight(row: list[str]) -> int:
    held = most = 0
    for cell in row:
        held += 1 if cell.startswith("F") else -1 if cell.startswith("B") else 0
        most = max(most, held)
    return most
