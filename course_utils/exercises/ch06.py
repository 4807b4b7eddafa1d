"""Checks for chapter 06's exercises (LoRA): how many parameters LoRA adds to a Llama-style model with grouped-query
attention, the best rank-r LoRA update for a given full fine-tuning change (and the fraction of it a rank captures),
and DoRA's forward pass.

Each exercise asks for something :mod:`course_utils.lora` does not provide (a parameter count from a config alone,
without building a model; the Eckart-Young factorisation; DoRA), so no package call is the answer. What is in reach is
switched off while the learner's function runs (:func:`_learner`, with
:func:`course_utils.checks.package_functions_switched_off`): this module's references, the case lists that carry
expected values and, where peft is installed, peft's answers (:func:`~course_utils.exercises.peft_routes.peft_answers`:
every DoRA layer's ``forward`` and ``get_weight_norm``, and :data:`~course_utils.exercises.peft_routes.PEFT_ANSWERS`,
the helpers that hand over 2a's factors, 2b's share or 3's merged weight, most on a stand-in ``self``; exercises 1 and 3
also refuse its layers' ``__init__``); exercise 3 also refuses torch's weight norm, which turns W + sBA and m into
DoRA's weight in one call (:func:`_weight_norm_refused`: the builtins ``torch._weight_norm`` and
``_weight_norm_interface``, and so ``nn.utils.parametrizations.weight_norm`` and the legacy ``nn.utils.weight_norm``);
:func:`course_utils.checks.exercise` switches off every reference solution of the chapter. The checks compute the
expected values with code unlike the solutions (:mod:`course_utils.solutions.ch06`): a per-layer enumeration of A and
B for the count; a KNOWN singular value decomposition, or the top eigenvectors of delta delta^T, instead of an SVD; an
einsum over explicitly normalised rows for DoRA. Failures go through :mod:`course_utils.checks`, whose messages never
show the expected value; ``tests/test_exercises_ch06.py`` feeds every check the reference solution, correct answers in
other forms, and the likely wrong answers.

DoRA's norm axis. The paper writes W in R^{d x k} with a magnitude m in R^{1 x k} and ||.||_c "the vector-wise norm
of a matrix across each column"; its W is laid out (in_features, out_features), so a column holds the weights of
ONE OUTPUT feature (the first author says so in nbasyl/DoRA issue #1, and NVlabs/DoRA's code computes
``torch.linalg.norm(weight, dim=1)`` on nn.Linear's (out, in) weight, as peft's ``DoraLinearLayer`` does). So for
an (out, in) weight the norm is taken over the input dimension, one norm per output row, and ``magnitude`` has
shape (out,): each output unit's weight vector gets a learned length and a LoRA-adapted direction.

Inputs are float64 CPU tensors drawn from a seeded ``torch.Generator``; answers may be tensors (any float dtype or
device), lists or numpy arrays. Tolerances: the parameter count must be a whole number (an int, or a float or tensor
equal to one) and exact (float64 holds integers exactly up to 2^53). A float32 SVD or DoRA forward is accurate to
~1e-6 of the largest entry (float32's epsilon is 1.2e-7, times a few dozen accumulated terms), and the top-r subspace
moves by about epsilon * s_1 / gap; every case keeps the gap s_r - s_{r+1} above 5% of s_1 (or has s_{r+1} = 0), so
products are compared within 1e-4 of the largest entry of delta (plus 1e-4 relative), DoRA outputs within 1e-5
absolute and 1e-4 relative, fractions within 1e-5. The likely mistakes are off by 1e-2 or more of the largest entry.

References: E. J. Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", 2021; C. Eckart, G. Young, "The
approximation of one matrix by another of lower rank", 1936; J. Ainslie et al., "GQA: Training Generalized
Multi-Query Transformer Models from Multi-Head Checkpoints", 2023; S.-Y. Liu et al., "DoRA: Weight-Decomposed
Low-Rank Adaptation", 2024, section 4.1.

Left out: checks of argument validation (the exercises are about the formulas), biases and embeddings in the count
(LoRA here wraps linear weights only), DoRA's gradients (the paper's section 4.3 treats the norm as a constant in the
backward pass, which changes gradients but not values, so only values are checked).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
from typing import Any, Callable
from unittest import mock

import torch

from course_utils import checks
from course_utils.exercises import peft_routes
from course_utils.device import make_generator

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _learner(fn: Callable, *args: Any) -> Any:
    """``fn(*args)`` with this module's references, the case lists that carry expected values (built before this block,
    compared after it) and :func:`~course_utils.exercises.peft_routes.peft_answers` switched off; the notebook's
    ``checks.exercise`` adds the solutions."""
    own = [_count_reference, _known_truth, _projected_truth, _svd_cases, _dora_reference, _dora_cases]
    with checks.package_functions_switched_off(*own, *peft_routes.peft_answers()):
        return fn(*args)


def _one_number(name: str, actual: Any, hint: str) -> float:
    t = checks.finite_float_tensor(name, actual, hint)
    if t.numel() != 1:
        raise AssertionError(f"{name}: expected one number, got shape {tuple(t.shape)}. {hint}")
    return float(t)


# ---------- exercise 1: LoRA parameters of a Llama-style model ----------

SMOLLM2_135M = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                    num_key_value_heads=3)
LLAMA2_7B = dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                 num_key_value_heads=32)
LLAMA3_8B_LIKE = dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                      num_key_value_heads=8)


def _count_reference(config: dict, r: int, targets: tuple[str, ...]) -> int:
    """Enumerate every wrapped matrix of every layer and add the sizes of its A (r, in) and B (out, r)."""
    hidden, ffn = config["hidden_size"], config["intermediate_size"]
    kv_width = config["num_key_value_heads"] * hidden // config["num_attention_heads"]
    in_out = {"q_proj": (hidden, hidden), "k_proj": (hidden, kv_width), "v_proj": (hidden, kv_width),
              "o_proj": (hidden, hidden), "gate_proj": (hidden, ffn), "up_proj": (hidden, ffn),
              "down_proj": (ffn, hidden)}
    total = 0
    for _layer in range(config["num_hidden_layers"]):
        for name in targets:
            fan_in, fan_out = in_out[name]
            total += r * fan_in + fan_out * r  # numel(A) + numel(B)
    return total


def _count_cases() -> list[tuple[str, dict, int, tuple[str, ...]]]:
    return [("SmolLM2-135M, r = 2, q_proj + up_proj", SMOLLM2_135M, 2, ("q_proj", "up_proj")),
            ("SmolLM2-135M, r = 16, o_proj + gate_proj + down_proj", SMOLLM2_135M, 16,
             ("o_proj", "gate_proj", "down_proj")),
            ("SmolLM2-135M, r = 4, k_proj only", SMOLLM2_135M, 4, ("k_proj",)),
            ("Llama-2-7B, r = 4, q_proj + o_proj", LLAMA2_7B, 4, ("q_proj", "o_proj")),
            ("Llama-2-7B, r = 64, gate_proj + down_proj", LLAMA2_7B, 64, ("gate_proj", "down_proj")),
            ("an 8B-like model with 8 KV heads, r = 16, all seven projections", LLAMA3_8B_LIKE, 16, PROJECTIONS),
            ("an 8B-like model with 8 KV heads, r = 1, k_proj + o_proj", LLAMA3_8B_LIKE, 1, ("k_proj", "o_proj")),
            ("a 2-layer toy with 4 heads and 2 KV heads, r = 2, v_proj + down_proj",
             dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2), 2, ("v_proj", "down_proj"))]


def check_lora_parameter_count(fn: Callable[[dict, int, tuple[str, ...]], Any]) -> None:
    """``fn(config, r, targets) -> int``: LoRA's added parameters, r * (in + out) per wrapped matrix, summed over
    all decoder layers, for a Llama-style ``config`` dict (hidden_size, intermediate_size, num_hidden_layers,
    num_attention_heads, num_key_value_heads)."""
    hint = ("count what LoRA trains beside each wrapped matrix (its two factors, section 2), for every target in "
            "every decoder layer; read each target's input and output widths from the exercise text, grouped-query "
            "attention included")
    for label, config, r, targets in _count_cases():
        name = f"LoRA parameter count, {label}"
        with _package_lora_switched_off(name):
            result = _learner(fn, dict(config), r, tuple(targets))
        answer = _one_number(name, result, hint)  # a plain number before the reference exists
        expected = _count_reference(config, r, targets)
        if answer != round(answer):
            raise AssertionError(f"{name}: the answer is not a whole number, and a parameter count is one. {hint}")
        checks.check_close(name, answer, expected, atol=0.0, rtol=0.0, hint=hint)


@contextlib.contextmanager
def _package_lora_switched_off(name: str):
    """While the learner's function runs, every model-based route to the count refuses to run: the package's LoRA
    layer cannot be built (its class's ``__init__`` is replaced, which catches every name it was imported under, and
    so ``apply_lora`` too), ``meta_model`` is switched off, and so are peft's models and layers
    (:func:`~course_utils.exercises.peft_routes.refuse_peft_inits`), transformers' ``PreTrainedModel.__init__`` (no
    meta-device ``LlamaForCausalLM`` whose widths would be read off) and any ``nn.Linear`` (a ``LlamaDecoderLayer``
    built alone has them)."""
    from course_utils.lora import layer, memory

    message = (f"{name}: this exercise asks for the count by arithmetic on the config; LoRALinear, apply_lora, "
               f"meta_model, peft, transformers' models and nn.Linear are switched off while the check runs")

    def refusing_init(self, *args, **kwargs):
        raise AssertionError(message)

    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(layer.LoRALinear, "__init__", refusing_init))
        peft_routes.refuse_peft_inits(stack, refusing_init)
        if importlib.util.find_spec("transformers") is not None:
            from transformers import PreTrainedModel

            stack.enter_context(mock.patch.object(PreTrainedModel, "__init__", refusing_init))
        stack.enter_context(mock.patch.object(torch.nn.Linear, "__init__", refusing_init))  # any model's layers
        stack.enter_context(checks.package_functions_switched_off(memory.meta_model))
        yield


# ---------- exercise 2: the best rank-r update (Eckart-Young) and the energy it captures ----------

def _with_spectrum(out_dim: int, in_dim: int, singular: list[float], g: torch.Generator) -> tuple:
    """(delta, U, s, V) with delta = U diag(s) V^T built from random orthonormal U (out, k), V (in, k)."""
    u, _ = torch.linalg.qr(torch.randn(out_dim, len(singular), generator=g, dtype=torch.float64))  # (out, k)
    v, _ = torch.linalg.qr(torch.randn(in_dim, len(singular), generator=g, dtype=torch.float64))  # (in, k)
    s = torch.tensor(singular, dtype=torch.float64)  # (k,) in any order
    return (u * s) @ v.T, u, s, v


def _known_truth(u, s, v, r: int) -> tuple[torch.Tensor, float]:
    keep = torch.argsort(s, descending=True)[:r]  # the r largest singular values, wherever they were put
    return (u[:, keep] * s[keep]) @ v[:, keep].T, float((s[keep] ** 2).sum() / (s ** 2).sum())  # (out, in), share


def _projected_truth(delta: torch.Tensor, r: int) -> tuple[torch.Tensor, float]:
    """Best rank-r approximation as the projection of delta onto the top-r eigenvectors of delta delta^T."""
    eigenvalues, vectors = torch.linalg.eigh(delta @ delta.T)  # ascending; eigenvalues are s_i^2
    top = vectors[:, -r:]  # (out, r)
    return top @ (top.T @ delta), float(eigenvalues[-r:].sum() / (delta * delta).sum())


def _svd_cases() -> list[tuple[str, torch.Tensor, int, torch.Tensor, float]]:
    g = make_generator(60, "cpu")
    cases = []
    for label, out_dim, in_dim, singular, r in (
            ("6 x 4, singular values 5, 3, 2, 1, r = 2", 6, 4, [2.0, 5.0, 1.0, 3.0], 2),
            ("48 x 32, singular values 0.8^i, r = 4", 48, 32, [0.8 ** i for i in range(32)], 4),
            ("24 x 40 (wider than tall), r = 1", 24, 40, [4.0, 1.5] + [1.0 - 0.03 * i for i in range(20)], 1),
            ("a rank-3 change of a 30 x 20 matrix, r = 5", 30, 20, [3.0, 2.0, 1.0], 5),
            ("10 x 7, r = 7 (full rank)", 10, 7, [7.0 - i for i in range(7)], 7)):
        delta, u, s, v = _with_spectrum(out_dim, in_dim, singular, g)
        cases.append((label, delta, r, *_known_truth(u, s, v, r)))
    signal, _, _, _ = _with_spectrum(64, 48, [10.0, 8.0, 6.0, 5.0], g)
    noisy = signal + 0.1 * torch.randn(64, 48, generator=g, dtype=torch.float64)
    cases.append(("a rank-4 change plus noise, 64 x 48, r = 4", noisy, 4, *_projected_truth(noisy, 4)))
    gaussian = torch.randn(40, 30, generator=g, dtype=torch.float64)
    cases.append(("a Gaussian 40 x 30 matrix, r = 5", gaussian, 5, *_projected_truth(gaussian, 5)))
    return cases


def check_best_rank_r_update(fn: Callable[[torch.Tensor, int], Any]) -> None:
    """``fn(delta (out, in), r) -> (B (out, r), A (r, in))`` with B @ A the best rank-r approximation of ``delta``
    in Frobenius norm. Any factorisation is accepted: only the product B @ A is compared."""
    hint = ("by Eckart-Young the best rank-r approximation keeps the r largest singular values of delta with their "
            "singular vectors, and the product must carry the values as well as the vectors; return the pair (B, A) "
            "with B of shape (out, r) and A of shape (r, in)")
    for index, (label, delta, r) in enumerate([case[:3] for case in _svd_cases()]):
        name = f"best rank-r update, {label}"
        answer = _learner(fn, delta.clone(), r)
        if not isinstance(answer, (tuple, list)) or len(answer) != 2:
            raise AssertionError(f"{name}: return a pair (B, A), got {type(answer).__name__}. {hint}")
        b, a = (checks.finite_float_tensor(f"{name} ({which})", x, hint) for which, x in zip("BA", answer))
        out_dim, in_dim = delta.shape
        if tuple(b.shape) != (out_dim, r) or tuple(a.shape) != (r, in_dim):
            raise AssertionError(f"{name}: B has shape {tuple(b.shape)} and A {tuple(a.shape)}; B must be "
                                 f"(out, r) = ({out_dim}, {r}) and A (r, in) = ({r}, {in_dim}). {hint}")
        scale = float(delta.abs().max())
        checks.check_close(f"{name}: B @ A", b @ a, _svd_cases()[index][3], atol=1e-4 * scale, rtol=1e-4,
                           hint=hint)  # the best product made after the learner's call


def check_captured_fraction(fn: Callable[[torch.Tensor, int], Any]) -> None:
    """``fn(delta (out, in), r) -> float``: ||best rank-r approximation||_F^2 / ||delta||_F^2, the sum of the r
    largest squared singular values over the sum of all of them."""
    hint = ("||delta||_F^2 is spread over the squared singular values of delta, and the best rank-r approximation "
            "keeps the largest r of them; the answer is a share of ||delta||_F^2, a number in (0, 1]")
    for index, (label, delta, r) in enumerate([case[:3] for case in _svd_cases()]):
        name = f"captured fraction, {label}"
        answer = _one_number(name, _learner(fn, delta.clone(), r), hint)
        fraction = _svd_cases()[index][-1]  # made after the learner's call: no local of this check held it meanwhile
        checks.check_close(name, answer, fraction, atol=1e-5, rtol=0.0, hint=hint)


# ---------- exercise 3: DoRA's forward pass ----------

def _dora_reference(x, weight, bias, lora_a, lora_b, magnitude, scaling) -> torch.Tensor:
    adapted = weight + scaling * torch.einsum("or,ri->oi", lora_b, lora_a)  # (out, in)
    row_lengths = adapted.pow(2).sum(dim=1).sqrt()  # (out,): one norm per output feature, over the inputs
    direction = adapted / row_lengths.unsqueeze(1)  # unit rows
    return torch.einsum("...i,oi->...o", x, magnitude.unsqueeze(1) * direction) + bias


def _dora_cases() -> list[tuple[str, tuple, torch.Tensor]]:
    g = make_generator(61, "cpu")
    d = torch.float64

    def layer(out_dim: int, in_dim: int, r: int, lead: tuple[int, ...], b_scale: float):
        w = torch.randn(out_dim, in_dim, generator=g, dtype=d) / in_dim ** 0.5  # (out, in)
        bias = 0.1 * torch.randn(out_dim, generator=g, dtype=d)  # (out,)
        a = torch.randn(r, in_dim, generator=g, dtype=d) / in_dim ** 0.5  # (r, in)
        b = b_scale * torch.randn(out_dim, r, generator=g, dtype=d)  # (out, r)
        x = torch.randn(*lead, in_dim, generator=g, dtype=d)  # (..., in)
        return x, w, bias, a, b

    cases = []
    args = (*layer(8, 8, 2, (2, 3), 0.5), 0.5 + torch.rand(8, generator=g, dtype=d), 2.0)
    cases.append(("square 8 x 8 weight, x of shape (2, 3, 8), scaling 2", args, _dora_reference(*args)))
    x, w, bias, a, b = layer(12, 20, 4, (5,), 0.0)
    args = (x, w, bias, a, b, torch.stack([row.dot(row).sqrt() for row in w]), 1.5)  # m: each row's length in W
    cases.append(("B = 0 and the initial magnitude", args, x @ w.T + bias))
    args = (*layer(12, 20, 4, (5,), 0.3), 0.5 + torch.rand(12, generator=g, dtype=d), 0.5)
    cases.append(("12 x 20 weight (out < in), scaling 0.5", args, _dora_reference(*args)))
    args = (*layer(20, 12, 1, (3, 2, 4), 0.05), 0.5 + torch.rand(20, generator=g, dtype=d), 16.0)
    cases.append(("20 x 12 weight (out > in), r = 1, scaling 16, x of shape (3, 2, 4, 12)", args,
                  _dora_reference(*args)))
    x, w, bias, a, b = layer(16, 16, 2, (4, 16), 0.0)
    args = (x, w, torch.zeros(16, dtype=d), a, b, 0.2 + 2 * torch.rand(16, generator=g, dtype=d), 1.0)
    cases.append(("B = 0 with a trained magnitude and a zero bias", args, _dora_reference(*args)))
    return cases


def check_dora_forward(fn: Callable[..., Any]) -> None:
    """``fn(x (..., in), W (out, in), b (out,), A (r, in), B (out, r), magnitude (out,), scaling) -> y (..., out)``
    with y = x W'^T + b, W' = magnitude * V / ||V|| row by row, V = W + scaling * B @ A."""
    hint = ("check which matrix is normalised (the adapted weight, LoRA's scaling included), along which axis (one "
            "norm per output feature), that the magnitude sets each output feature's length, and that the result is "
            "applied like nn.Linear, bias included")

    def refusing_init(self, *args, **kwargs):  # peft's DoRA would be the answer (exercise 1 refuses peft too)
        raise AssertionError("DoRA forward: write it out; peft's LoRA and DoRA layers are switched off meanwhile")

    for index, (label, args) in enumerate([case[:2] for case in _dora_cases()]):
        name = f"DoRA forward, {label}"
        with contextlib.ExitStack() as stack:  # peft's routes are switched off while the learner's function runs
            peft_routes.refuse_peft_inits(stack, refusing_init)
            _weight_norm_refused(stack, fn)
            stack.enter_context(checks.OpsRefused(("_weight_norm", "_weight_norm_interface")))  # torch.ops.aten too
            stack.enter_context(checks.package_functions_switched_off(  # and torch's Python decomposition of it
                *checks.library_functions("torch._decomp.decompositions", "_weight_norm_interface")))
            result = _learner(fn, *(t.clone() if isinstance(t, torch.Tensor) else t for t in args))
        answer = checks.finite_float_tensor(name, result, hint)
        checks.check_close(name, answer, _dora_cases()[index][2], atol=1e-5, rtol=1e-4, hint=hint)  # made after


def _weight_norm_refused(stack: contextlib.ExitStack, fn: Callable) -> None:
    """Refuse torch's weight norm until ``stack`` closes (also after a raise): ``torch._weight_norm(V, m[:, None], 0)``
    is W' = m * V / ||V|| row by row. Its builtins cannot have their code swapped, so the names bound to them are
    (:func:`course_utils.checks.bindings_refused`): in ``torch``, where ``nn.utils.parametrizations.weight_norm`` looks
    it up at each forward, in the legacy ``torch.nn.utils.weight_norm`` module, which imported it by name, and in
    ``fn``'s module (``from torch import _weight_norm`` in the notebook)."""
    builtins = {f"torch.{name}": getattr(torch, name) for name in ("_weight_norm", "_weight_norm_interface")
                if hasattr(torch, name)}
    legacy = importlib.import_module("torch.nn.utils.weight_norm")  # the module (nn.utils.weight_norm is a function)
    checks.bindings_refused(stack, builtins, torch, legacy, getattr(fn, "__globals__", None))
