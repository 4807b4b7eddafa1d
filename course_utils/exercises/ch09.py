"""Checks for chapter 09's exercises (inside a modern LLM): rotary position embeddings by hand, grouped-query
attention, and the Switch Transformer's load-balancing loss for a top-k router.

Each check calls the learner's function on seeded CPU cases and computes the expected value itself, with code written
differently from the reference solution (:mod:`course_utils.solutions.ch09`) and from the package: RoPE as a complex
multiplication of (x_i + j x_{i+D/2}) by e^{j angle} (the solution and :mod:`course_utils.model.modern` rotate real
halves), attention as one explicit loop per query head that picks its key/value head by index (the solution repeats the
key/value heads), and the expert fractions by counting one-hot rows of a sorted ranking (the solution uses topk and
bincount). Failure messages (:mod:`course_utils.checks`) never show the expected value; the tests feed every check the
reference solution, correct answers in other forms and the likely wrong answers.

The package has each answer (:func:`~course_utils.model.modern.apply_rope` and its helpers, ``repeat_kv`` and the Llama
attention, :func:`~course_utils.model.moe.load_balancing_loss` and ``route``): while the learner's function runs they
and this module's references are switched off (:func:`course_utils.checks.package_functions_switched_off`). Library
calls that do an exercise's work are refused too. RoPE: ``ROPE_LIBRARY``'s rotations in every ``transformers`` model
module (``apply_rotary_pos_emb``, ``rotate_half``, their interleaved, complex, 2-D and vision kin; class and static
methods too), PyTorch's ONNX ``RotaryEmbedding`` and the code behind it, and where loaded peft's copies (adaption
prompt, RoAd) and the OpenVINO exporter's. GQA: SDPA's ``enable_gqa=True`` and fused kernels, ``flex_attention`` and its
eager code, ONNX's ``Attention``, ``repeat_kv`` and ``eager_attention_forward``. Balance: ``load_balancing_loss_func``,
``top_k`` times this loss. SDPA without ``enable_gqa`` and chapter 02's attention stay on. Not seen: calls inside
TorchScript or under ``torch._C.DisableTorchFunction`` (the guards stop shortcuts, not a determined evader).

Conventions the exercise text states.
RoPE (Su et al., 2021, "RoFormer"), in the "rotate half" pairing that ``transformers``' Llama and SmolLM2 use
(GPT-NeoX's layout; RoFormer, GPT-J and Meta's original Llama code pair neighbours 2i and 2i+1 instead, and the
Hugging Face conversion permutes the query/key weights to match): coordinate i is paired with i + D/2, pair i turns by
angle ``position * theta^(-2i/D)``, i = 0 .. D/2 - 1, counter-clockwise: (a, b) -> (a cos - b sin, a sin + b cos).
Grouped-query attention (Ainslie et al., 2023, "GQA"): query head h reads key/value head h // (H / H_kv), so
consecutive query heads share (``transformers``' ``repeat_kv`` order); causal, scores scaled by 1/sqrt(D).
Load balancing (Fedus, Zoph and Shazeer, 2021, "Switch Transformers", equation 4, with the top-k counting of
:mod:`course_utils.model.moe`): p = softmax(router_logits) over experts, each token's k most probable experts are its
assignments, f_i = assignments to expert i / (N k), P_i = mean over tokens of p[:, i], loss = E sum_i f_i P_i,
returned as a tensor whose gradient flows to the logits through P (f is a count).

Tolerances. RoPE: float32 angles at positions up to ~500 are off by ~500 x 6e-8 rad, outputs by ~1e-4 of |x| (the
package's float32 version: within 5e-5 of the float64 expected values); compared within 5e-4 + 1e-4 relative, while the
likely mistakes are off by 0.7 or more. Attention: a float32 learner is within ~1e-6; compared within 1e-5 + 1e-4
relative. Loss: a float32 learner is within ~1e-6 (values of order 1) and ~1e-9 on the gradient (of order 1e-3 to 1e-2);
compared within 1e-5 and 1e-7 + 1e-4 relative. Every router case has distinct probabilities except the all-equal one,
where the loss is exactly 1 for any choice of experts, so every tie order passes (its gradient depends on the tie order:
left out of the gradient comparison).

Left out: argument validation, RoPE scaling, attention over a KV cache (queries fewer than keys), padding masks,
expert capacity, the KV-cache size formula with GQA (chapter 07's Mistral exercise asks for it)."""

from __future__ import annotations

import contextlib
import functools
import math
from typing import Any, Callable, ContextManager

import torch

from course_utils import checks
from course_utils.device import make_generator
from course_utils.model import llama, modern, moe

ROPE_ATOL, ROPE_RTOL = 5e-4, 1e-4
ATTENTION_ATOL, ATTENTION_RTOL = 1e-5, 1e-4
LOSS_ATOL, GRAD_ATOL, LOSS_RTOL = 1e-5, 1e-7, 1e-4
LLAMA, MIXTRAL = "transformers.models.llama.modeling_llama", "transformers.models.mixtral.modeling_mixtral"


def _call(fn: Callable, *args: Any, library: tuple[str, ...] = (), first: str = LLAMA, extra: tuple = (),
          also: Callable[[], ContextManager[None]] = contextlib.nullcontext) -> Any:
    """The learner's ``fn(*args)`` with the package's answers, this module's references, ``transformers``' functions
    and methods called ``library`` and ``extra`` switched off (one block: one watch for copies), ``also()`` entered."""
    with checks.package_functions_switched_off(
            modern.apply_rope, modern.rope_cos_sin, modern.rotate_half, modern.rope_inverse_frequencies,
            modern.repeat_kv, llama._attend, moe.route, moe.load_balancing_loss, moe.expert_counts,
            _rope_reference, _gqa_reference, _balance_reference,  # and this module's own answers
            *checks.library_functions("torch.onnx.ops._impl", "rotary_embedding_23._init_fn", "attention_23._init_fn"),
            *checks.library_functions("peft.tuners.adaption_prompt.utils", "llama_apply_rotary_pos_emb",  # if loaded:
                                      "llama_rotate_half", loaded_only=True),  # peft's and OpenVINO's RoPE copies
            *checks.library_functions("peft.tuners.road.layer", "_prepare_cols", loaded_only=True),
            *checks.library_functions("transformers.exporters.exporter_openvino", "_apply_rotary_pos_emb_pairs",
                                      "_rotate_half_pairs", loaded_only=True),
            *checks.loaded_transformers_copies(library, first), *extra), also():
        return fn(*args)


def _tensor_of_shape(name: str, answer: Any, shape: tuple[int, ...], hint: str) -> torch.Tensor:
    t = checks.finite_float_tensor(name, answer, hint)
    if tuple(t.shape) != shape:
        raise AssertionError(f"{name}: shape {tuple(t.shape)}, expected {shape}. {hint}")
    return t


# ---------- exercise 1: RoPE by hand ----------

# switched off while the check runs (every copy): transformers' rotations, whatever their pairing (one permute away)
ROPE_LIBRARY = ("apply_rotary_pos_emb", "rotate_half", "_apply_rotary_emb", "_apply_rotary_embedding",
                "apply_rotary_pos_emb_interleave", "apply_rotary_emb", "vision_apply_rotary_emb",
                "apply_rotary_position_embeddings", "rotate_pairwise", "rotate_every_two", "rotate_half_llm",
                "rotate_half_text", "apply_rotary_pos_emb_2d", "apply_rotary_pos_emb_2d_self_attn",
                "apply_rotary_pos_emb_2d_cross_attn", "apply_rotary_pos_emb_vision", "apply_multidimensional_rope",
                "apply_rotary_time_emb", "rotate_queries_or_keys")

ROPE_HINT = ("pair coordinate i with coordinate i + D/2 (the two HALVES of the last dimension, not neighbours 2i and "
             "2i+1); pair i turns by angle position * theta ** (-2i / D), so pair 0 turns fastest (one radian per "
             "position); turn counter-clockwise, (a, b) -> (a cos - b sin, a sin + b cos); use the positions you are "
             "given (they need not start at 0), one per row along the T dimension")


_ONNX_ROPE_REFUSED = functools.partial(checks.OpsRefused, ("RotaryEmbedding",))  # torch.onnx.ops.rotary_embedding


def _rope_cases() -> list[tuple[str, torch.Tensor, torch.Tensor, float]]:
    g = make_generator(90, "cpu")
    x = functools.partial(torch.randn, generator=g)  # x(*shape): a seeded draw
    return [("one vector at position 0 (nothing turns)", x(1, 8), torch.tensor([0]), 10000.0),
            ("(T, D) = (5, 8), positions 0..4", x(5, 8), torch.arange(5), 10000.0),
            ("(T, D) = (7, 2), one pair, positions 0, 3, .., 18", x(7, 2), torch.arange(7) * 3, 10000.0),
            ("(H, T, D) = (3, 6, 16), positions 37..42 (after a 37-token prompt)", x(3, 6, 16),
             torch.arange(37, 43), 10000.0),
            ("(H, T, D) = (2, 4, 64), unsorted positions below 500, theta 100,000 (SmolLM2)", x(2, 4, 64),
             torch.randint(0, 500, (4,), generator=g), 100000.0),
            ("(T, D) = (3, 32) in float64, positions 5, 1, 2, theta 500,000 (Llama 3)", x(3, 32).double(),
             torch.tensor([5, 1, 2]), 500000.0)]


def _rope_reference(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    half, x64 = x.shape[-1] // 2, x.double()
    pairs = torch.complex(x64[..., :half], x64[..., half:])  # (..., T, D/2): x_i + j x_{i+D/2}
    frequencies = torch.tensor([theta ** (-2.0 * i / x.shape[-1]) for i in range(half)], dtype=torch.float64)
    turn = torch.polar(torch.ones(len(positions), half, dtype=torch.float64),
                       positions.double()[:, None] * frequencies)  # (T, D/2): e^{j angle}
    turned = pairs * turn
    return torch.cat((turned.real, turned.imag), dim=-1)  # (..., T, D)


def check_apply_rotary(fn: Callable[[torch.Tensor, torch.Tensor, float], Any]) -> None:
    """Exercise statement: write ``apply_rotary(x, positions, theta=10000.0)``.

    ``x`` holds queries or keys, shape (T, D) or (H, T, D) with D even; ``positions`` is an integer tensor (T,), the
    position of each row. Pair coordinate i with coordinate i + D/2 (the "rotate half" layout of ``transformers``'
    Llama, not neighbours 2i and 2i+1), and turn pair i by the angle ``positions[t] * theta ** (-2i / D)``,
    i = 0 .. D/2 - 1, counter-clockwise: (a, b) -> (a cos - b sin, a sin + b cos). Return a tensor of x's shape.
    The check first tests the property RoPE is for (a query at position m and a key at position n score q . k
    depending only on m - n), then compares values on six cases; ``transformers``' RoPE helpers are switched off.
    """
    _check_relative_property(fn)
    for label, x, positions, theta in _rope_cases():
        name = f"apply_rotary, {label}"
        answer = _call(fn, x.clone(), positions.clone(), theta, library=ROPE_LIBRARY, also=_ONNX_ROPE_REFUSED)
        checks.check_close(name, _tensor_of_shape(name, answer, tuple(x.shape), ROPE_HINT),
                           _rope_reference(x, positions, theta), atol=ROPE_ATOL, rtol=ROPE_RTOL, hint=ROPE_HINT)


def _check_relative_property(fn: Callable) -> None:
    g = make_generator(91, "cpu")
    q, k = torch.randn(1, 16, generator=g), torch.randn(1, 16, generator=g)
    name = "apply_rotary: a query at m and a key at n score q . k depending only on m - n"
    hint = ("rotate q by its own position and k by its own position, each pair by an angle proportional to the "
            "position; then the score sees only the difference of the angles. " + ROPE_HINT)
    for offset in (0, 3):
        scores = []
        for n in (0, 5, 40):
            turned = [_tensor_of_shape(name, _call(fn, v.clone(), torch.tensor([at]), 10000.0, library=ROPE_LIBRARY,
                                                   also=_ONNX_ROPE_REFUSED),
                                       (1, 16), hint) for v, at in ((q, n + offset), (k, n))]  # q at m, k at n
            scores.append(float((turned[0] * turned[1]).sum()))
        if max(scores) - min(scores) > 1e-4 * (1 + max(abs(s) for s in scores)):
            raise AssertionError(f"{name}: with offset m - n = {offset}, the score changes when m and n move "
                                 f"together (m = n + {offset} for n = 0, 5, 40). {hint}")
    checks.passed(name)


# ---------- exercise 2: grouped-query attention ----------

GQA_LIBRARY = ("eager_attention_forward", "repeat_kv")

GQA_HINT = ("query head h reads key/value head h // (H // H_kv): CONSECUTIVE query heads share one key/value head "
            "(heads 0..H/H_kv - 1 read head 0), not every H_kv-th head; position t attends to positions 0..t only "
            "(causal); scale the scores by 1 / sqrt(D), D the head size; return (B, H, T, D)")

GQA_REFUSED = ("PyTorch's scaled_dot_product_attention(..., enable_gqa=True) is refused while the check runs, and "
               "flex_attention switched off (even on heads you repeated): they share the key/value heads for you; "
               "share them yourself (then matmuls and a softmax, or SDPA without enable_gqa, are fine)")


class _LibraryGQARefused(checks.OpsRefused):
    """While active, any torch function called with ``enable_gqa=True`` raises, under whatever name it was imported
    (a mode, unlike an attribute swap, sees every route: F., an earlier import, torch._C, torch.ops), and so do the
    ONNX operator ``torch.onnx.ops.attention`` and SDPA's fused kernels (GQA in one call); the ``with`` block pops it,
    also after a raise. It sees flex_attention's operator (refused too), not the Python function."""

    def __init__(self) -> None:  # ONNX's operator and SDPA's fused kernels, which share the key/value heads themselves
        super().__init__(("Attention", "_scaled_dot_product_flash_attention_for_cpu",
                          "_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
                          "_scaled_dot_product_cudnn_attention", "_scaled_dot_product_attention_math_for_mps",
                          "_flash_attention_forward", "_flash_attention_forward_no_dropout_inplace", "_varlen_attn",
                          "_varlen_attn_out"))

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if (kwargs or {}).get("enable_gqa") or getattr(func, "__name__", None) == "flex_attention":  # or its operator
            raise AssertionError(f"grouped-query attention: {GQA_REFUSED}")
        return super().__torch_function__(func, types, args, kwargs)


def _gqa_cases() -> list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]]:
    g = make_generator(92, "cpu")
    cases = []
    for B, H, H_kv, T, D, what in ((1, 4, 2, 5, 8, "2 query heads per key/value head"),
                                   (2, 9, 3, 6, 16, "SmolLM2's 9 query and 3 key/value heads"),
                                   (1, 6, 2, 4, 8, "3 query heads per key/value head"),
                                   (1, 8, 1, 4, 8, "one key/value head (multi-query attention)"),
                                   (2, 4, 4, 3, 4, "as many key/value heads as query heads (multi-head)"),
                                   (1, 6, 3, 1, 8, "a single position")):
        q = torch.randn(B, H, T, D, generator=g)
        k, v = torch.randn(B, H_kv, T, D, generator=g), torch.randn(B, H_kv, T, D, generator=g)
        cases.append((f"{what}: B={B}, H={H}, H_kv={H_kv}, T={T}, D={D}", q, k, v))
    return cases


def _gqa_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    q, k, v = q.double(), k.double(), v.double()
    B, H, T, D = q.shape
    group = H // k.shape[1]
    future = torch.ones(T, T, dtype=torch.bool).triu(diagonal=1)  # (T, T) True where the key is in the future
    out = torch.empty(B, H, T, D, dtype=torch.float64)
    for h in range(H):
        shared = h // group  # the key/value head this query head reads
        scores = q[:, h] @ k[:, shared].transpose(-2, -1) / math.sqrt(D)  # (B, T, T)
        out[:, h] = scores.masked_fill(future, -math.inf).softmax(dim=-1) @ v[:, shared]
    return out


def check_grouped_query_attention(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], Any]) -> None:
    """Exercise statement: write ``grouped_query_attention(q, k, v)``.

    ``q`` is (B, H, T, D), ``k`` and ``v`` are (B, H_kv, T, D) with H_kv dividing H. Query head h uses key/value head
    ``h // (H // H_kv)`` (consecutive query heads share, the order of ``transformers``' ``repeat_kv``). Attention is
    causal (position t sees positions 0..t) with scores scaled by 1/sqrt(D). Return the heads' outputs, (B, H, T, D).
    SDPA's ``enable_gqa=True`` and fused kernels, ``flex_attention``, ONNX's ``Attention``, ``repeat_kv`` and
    ``eager_attention_forward`` are off meanwhile."""
    # PyTorch's flex_attention and the eager code behind it (torch 2.5 and later), Python functions: off by their code
    flex = (*checks.library_functions("torch.nn.attention.flex_attention", "flex_attention"),
            *checks.library_functions("torch._higher_order_ops.flex_attention", "math_attention"))
    for label, q, k, v in _gqa_cases():
        name = f"grouped-query attention, {label}"
        answer = _call(fn, q.clone(), k.clone(), v.clone(), library=GQA_LIBRARY, extra=flex, also=_LibraryGQARefused)
        checks.check_close(name, _tensor_of_shape(name, answer, tuple(q.shape), GQA_HINT), _gqa_reference(q, k, v),
                           atol=ATTENTION_ATOL, rtol=ATTENTION_RTOL, hint=GQA_HINT)


# ---------- exercise 3: the load-balancing loss ----------

BALANCE_LIBRARY = ("load_balancing_loss_func",)

BALANCE_HINT = ("p = softmax of the router logits over the E experts; P_i = mean over the N tokens of p[:, i] (the "
                "router's probabilities for ALL experts, not the renormalised top-k gates); f_i = the share of the "
                "N * k assignments (each token's k most probable experts: exactly k per token, even when probabilities "
                "tie, as topk picks them, not a threshold) that went to expert i, so sum_i f_i = 1; "
                "loss = E * sum_i f_i * P_i, which is 1 when routing is balanced")


def _router_cases() -> list[tuple[str, torch.Tensor, int]]:
    g = make_generator(93, "cpu")
    collapsed = torch.randn(24, 4, generator=g)
    collapsed[:, 0] += 4.0  # every token prefers expert 0
    return [("8 tokens, 4 experts, top-1 (Switch)", torch.randn(8, 4, generator=g), 1),
            ("32 tokens, 8 experts, top-2 (Mixtral's k)", 2 * torch.randn(32, 8, generator=g), 2),
            ("24 tokens, a router collapsed onto expert 0, top-2", collapsed, 2),
            ("10 tokens, all logits equal (a uniform router), top-2", torch.zeros(10, 4), 2),
            ("64 tokens, 6 experts, top-3", 3 * torch.randn(64, 6, generator=g), 3)]


def _balance_reference(logits: torch.Tensor, top_k: int) -> torch.Tensor:
    """The loss in float64, differentiable with respect to ``logits`` (which may require grad)."""
    probs = logits.double().softmax(dim=-1)  # (N, E)
    N, E = probs.shape
    ranking = probs.detach().argsort(dim=-1, descending=True)[:, :top_k]  # (N, k) each token's k best experts
    chosen = torch.zeros(N, E, dtype=torch.float64)
    for slot in range(top_k):
        chosen += torch.nn.functional.one_hot(ranking[:, slot], E).double()
    fraction = chosen.sum(dim=0) / (N * top_k)  # (E,) f_i
    return E * (fraction * probs.mean(dim=0)).sum()


def check_load_balancing_loss(fn: Callable[[torch.Tensor, int], Any]) -> None:
    """Exercise statement: write ``load_balancing_loss(router_logits, top_k)``.

    ``router_logits`` is (N, E): one logit per token and expert. p = softmax over the experts; each token's ``top_k``
    most probable experts are its assignments; f_i = (assignments to expert i) / (N * top_k); P_i = mean over tokens
    of p[:, i] (all experts' probabilities, not the renormalised top-k gates). Return E * sum_i f_i * P_i as a
    0-dim tensor that gradients flow through (it is added to the training loss; f is a count, so they flow through
    P). The check compares the value on five cases and the gradient with respect to the logits on four.
    ``transformers``' ``load_balancing_loss_func`` (top_k times this loss, every copy) is switched off meanwhile.
    """
    for label, logits, top_k in _router_cases():
        _check_value(fn, f"load-balancing loss, {label}", logits, top_k)
    for label, logits, top_k in _router_cases():  # not the uniform router: its gradient E sum_i f_i dP_i
        if not logits.eq(logits[0, 0]).all():       # depends on which tied experts were picked
            _check_gradient(fn, f"load-balancing loss gradient, {label}", logits, top_k)


def _check_value(fn: Callable, name: str, logits: torch.Tensor, top_k: int) -> None:  # no local outlives a case
    answer = _call(fn, logits.clone(), top_k, library=BALANCE_LIBRARY, first=MIXTRAL)
    value = checks.finite_float_tensor(name, answer, BALANCE_HINT)
    if value.numel() != 1:
        raise AssertionError(f"{name}: expected one number, got shape {tuple(value.shape)}. {BALANCE_HINT}")
    checks.check_close(name, float(value), float(_balance_reference(logits, top_k)), atol=LOSS_ATOL,
                       rtol=LOSS_RTOL, hint=BALANCE_HINT)


def _check_gradient(fn: Callable, name: str, logits: torch.Tensor, top_k: int) -> None:
    hint = ("return the loss as a torch tensor computed from router_logits with torch operations (no .item(), "
            "float() or .detach() on the probabilities), so that loss.backward() reaches the router. " + BALANCE_HINT)
    learner_logits = logits.clone().requires_grad_(True)
    answer = _call(fn, learner_logits, top_k, library=BALANCE_LIBRARY, first=MIXTRAL)
    if not isinstance(answer, torch.Tensor) or not answer.requires_grad or answer.numel() != 1:
        raise AssertionError(f"{name}: your loss is not a one-element tensor that gradients flow through. {hint}")
    answer.sum().backward()
    if learner_logits.grad is None:
        raise AssertionError(f"{name}: no gradient reached router_logits. {hint}")
    reference_logits = logits.double().requires_grad_(True)
    _balance_reference(reference_logits, top_k).backward()
    checks.check_close(name, learner_logits.grad, reference_logits.grad, atol=GRAD_ATOL, rtol=LOSS_RTOL, hint=hint)
