"""One run of a scaling sweep: train a character-level GPT of a given shape on a given number of tokens.

:func:`train_scaling_run` is a module-level function of a frozen :class:`ScalingRun` spec, so
:func:`course_utils.scaling.sweep.run_sweep` can cache it by the spec's hash and send it to worker processes. Every
run uses the same recipe (AdamW, warm-up then cosine decay to 10% of the peak over exactly the run's steps, as
Hoffmann et al. 2022 found necessary: a schedule longer than the run overstates the loss at small budgets), the same
held-out plays and the same validation windows, so runs differ only in shape and token budget.

Precision: ``"fp32"`` (exact, the default) or ``"bf16"`` (autocast in the training forward, through the training
loop's ``TrainConfig.precision``). Under CPU bf16 the model uses the explicit attention path
(``GPTConfig.attention="manual"``): PyTorch's fused SDPA is slower under CPU autocast than float32 training
(measured in ``benchmarks/RESULTS.md``, chapter 01), while the explicit version runs its matmuls as bf16 GEMMs;
fp32 runs and every GPU run keep SDPA. On a CPU bf16 does not pay at these widths: without AVX512-BF16 or AMX
(AVX2 only) a bf16 matmul is emulated (``benchmarks/bench_scaling_sweep.py`` measured it about 60x slower than fp32,
and bf16 training at 0.12-0.15x of fp32's tokens/s), and even with them (an AMX Xeon, ``--precision-only``) bf16
autocast trained every shape of the cpu grid at 0.65-0.87x of fp32's tokens/s. So :func:`default_precision` picks
bf16 only on a CUDA GPU that has it.

Left out: choosing the learning rate per size (one rate for all sizes is a simplification tiny models tolerate;
muP, Yang et al. 2022, is the principled fix), and anything but the character-level corpus.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator

import torch

from course_utils.arguments import check_int, check_real
from course_utils.device import check_device_name, make_generator, native_bf16, torch_threads
from course_utils.model.gpt import GPT, GPTConfig
from course_utils.scaling.compute import gpt_train_flops_per_token
from course_utils.text.codecs import CharCodec
from course_utils.text.corpus import DEFAULT_VAL_WORKS, load_shakespeare
from course_utils.train.batches import make_batch_fn
from course_utils.train.loop import PRECISIONS, TrainConfig, train


def default_precision(device: str = "cpu") -> str:
    """``"bf16"`` on a CUDA GPU with native bf16 matmuls (e.g. Ampere or newer), else ``"fp32"``: on CPUs, even those
    with AVX512-BF16 or AMX, bf16 autocast trains these small models more slowly than fp32 (measured, see above)."""
    return "bf16" if str(device).split(":")[0] == "cuda" and native_bf16(device) else "fp32"


def attention_for(precision: str, device: str) -> str:
    """The GPT's attention path for a run: explicit matmuls under CPU bf16 (faster there), PyTorch's SDPA otherwise."""
    return "manual" if precision == "bf16" and str(device).split(":")[0] == "cpu" else "sdpa"


@dataclass(frozen=True)
class ScalingRun:
    n_layer: int
    n_head: int
    n_embd: int
    tokens: int  # training tokens D (rounded down to whole batches)
    block_size: int = 64
    batch_size: int = 32
    lr: float = 3e-3
    warmup_frac: float = 0.05
    weight_decay: float = 0.1
    seed: int = 0
    eval_batches: int = 16
    max_train_chars: int | None = None  # None: every training play
    val_works: tuple[str, ...] = DEFAULT_VAL_WORKS
    threads: int = 1  # torch threads inside the run (1 per process when runs go to a process pool)
    precision: str = "fp32"  # "fp32" or "bf16" (autocast forward; see default_precision)
    device: str = "cpu"  # "cpu", "cuda", "cuda:N" or "mps": where the model, the data and the generator live

    def __post_init__(self) -> None:
        # integers are stored as Python ints (a numpy int from a grid passes; the run's hash, a JSON of the fields,
        # is the same as for the Python int)
        for name in ("n_layer", "n_head", "n_embd", "block_size", "tokens", "batch_size", "eval_batches", "threads"):
            object.__setattr__(self, name, check_int(getattr(self, name), f"ScalingRun.{name}", minimum=1,
                                                     allowed="a positive int"))
        object.__setattr__(self, "seed", check_int(self.seed, "ScalingRun.seed", minimum=0,
                                                   allowed="a non-negative int"))
        if self.max_train_chars is not None:
            object.__setattr__(self, "max_train_chars", check_int(self.max_train_chars, "ScalingRun.max_train_chars",
                                                                  minimum=1, allowed="a positive int or None"))
        GPTConfig(vocab_size=2, block_size=self.block_size, n_layer=self.n_layer, n_head=self.n_head,
                  n_embd=self.n_embd)  # validates the shape with GPTConfig's messages
        if self.tokens < self.batch_size * self.block_size:
            raise ValueError(f"tokens ({self.tokens}) must cover at least one batch of "
                             f"batch_size x block_size = {self.batch_size * self.block_size}")
        check_real(self.warmup_frac, "warmup_frac", minimum=0, maximum=1, high_open=True,  # kept as given (hashed)
                   allowed="in [0, 1)")
        if self.precision not in PRECISIONS:
            raise ValueError(f"ScalingRun.precision must be one of {PRECISIONS}, got {self.precision!r}")
        check_device_name(self.device, "ScalingRun.device")

    @property
    def steps(self) -> int:
        return self.tokens // (self.batch_size * self.block_size)

    def config(self, vocab_size: int) -> GPTConfig:
        """The model's config: explicit attention under CPU bf16 (faster there), SDPA otherwise."""
        return GPTConfig(vocab_size=vocab_size, block_size=self.block_size, n_layer=self.n_layer,
                         n_head=self.n_head, n_embd=self.n_embd, attention=attention_for(self.precision, self.device))


@contextmanager
def seeded_cpu_rng(seed: int) -> Iterator[None]:
    """Torch's global CPU generator seeded with ``seed`` inside, the caller's state restored on exit: a run's weight
    initialisation (built on the CPU, then moved) draws from it, and a run in the caller's process (``executor=None``)
    must not change what the caller draws next. Training draws only from explicit generators (dropout is 0)."""
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        yield


@lru_cache(maxsize=4)
def _char_data(val_works: tuple[str, ...], max_train_chars: int | None):
    corpus = load_shakespeare(val_works, max_train_chars=max_train_chars)
    codec = CharCodec.from_texts([corpus.train_text, corpus.val_text])
    return (codec.vocab_size, torch.tensor(codec.encode(corpus.train_text), dtype=torch.long),
            torch.tensor(codec.encode(corpus.val_text), dtype=torch.long))


def train_scaling_run(spec: ScalingRun, progress: bool = False) -> dict:
    """Train ``spec`` on ``spec.device`` and return what a scaling fit and the benchmark need (JSON-serialisable);
    ``progress`` shows a bar over the run's steps (for a long run in the caller's process, not in a sweep's workers)."""
    if not isinstance(spec, ScalingRun):
        raise TypeError(f"spec must be a ScalingRun, got {type(spec).__name__}")
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be True or False, got {type(progress).__name__}")
    vocab_size, train_ids, val_ids = _char_data(spec.val_works, spec.max_train_chars)
    device = torch.device(spec.device)
    config = spec.config(vocab_size)
    steps = spec.steps
    recipe = TrainConfig(max_steps=steps, lr=spec.lr, min_lr=spec.lr / 10, warmup_steps=int(spec.warmup_frac * steps),
                         weight_decay=spec.weight_decay, eval_interval=steps, eval_batches=spec.eval_batches,
                         eval_train_split=False, fused_optimizer=True, progress=progress, precision=spec.precision)
    with torch_threads(spec.threads):
        with seeded_cpu_rng(spec.seed):  # weight initialisation uses the global generator (on the CPU, then moved)
            model = GPT(config).to(device)
        train_ids, val_ids = train_ids.to(device), val_ids.to(device)
        get_batch = make_batch_fn(train_ids, val_ids, spec.batch_size, spec.block_size, device)
        eval_batch = make_batch_fn(train_ids, val_ids, 32, spec.block_size, device)  # one validation set for all
        start = time.perf_counter()
        history = train(model, get_batch, recipe, make_generator(spec.seed, device), eval_get_batch=eval_batch)
        seconds = time.perf_counter() - start
    tokens = steps * spec.batch_size * spec.block_size
    n_params = model.num_parameters()
    flops_counted = float(gpt_train_flops_per_token(config)["total"] * tokens)
    return {"val_loss": history.final_val_loss, "vocab_size": vocab_size, "n_params": n_params,
            "n_params_total": model.num_parameters(non_embedding=False), "tokens": tokens, "steps": steps,
            "seconds": seconds, "tokens_per_s": tokens / seconds, "flops_6nd": 6.0 * n_params * tokens,
            "flops_counted": flops_counted, "gflops_per_s": flops_counted / seconds / 1e9,
            "precision": spec.precision, "device": str(device), "threads": spec.threads}
