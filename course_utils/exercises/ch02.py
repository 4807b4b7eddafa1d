"""Checks for chapter 02's exercises (attention masks): each takes the learner's function and fails on wrong answers.

Expected values are computed here by slow, obviously-correct loops (not by the vectorised reference solutions in
:mod:`course_utils.solutions.ch02`) and are never printed: failures say how many entries are wrong and give a hint.
``tests/test_exercises_ch02.py`` feeds every check the reference solution, other correct forms (lists, other dtypes)
and the likely wrong answers (off-by-one windows, a transposed mask, a mask that sees the future, position ids
starting at 1, counted over padding or counted across rows, an MLM loss averaged per row first or over every position).

Exercise 1 asks for the idea behind every mask of :mod:`course_utils.model.masks`, whose functions could be composed
into the answer (a causal sliding window OR the transpose of another one is a (left, right) window); while the learner's
function runs they are switched off by :func:`course_utils.checks.package_functions_switched_off`. Plain PyTorch
(``torch.tril``/``torch.triu`` with a diagonal offset) stays allowed: it still needs the inequality. The loops that
compute the expected values here (``_window_by_loops`` and the others) are answers too, so every exercise's learner call
runs with them switched off. So are the library and package functions that answer an exercise
(:func:`course_utils.checks.library_functions`): for exercises 1 and 2, ``transformers.masking_utils``' mask functions
and the factories that compose them (``HF_MASKS``: ``and_masks``, ``sliding_window_overlay``,
``packed_sequence_mask_function``, ..., and ``sdpa_mask``, which the notebook shows; switching a factory off is what
counts, its closures are made by it), and for exercise 1 also the sliding-window causal masks of the older
``transformers.modeling_attn_mask_utils`` (``HF_ATTN_MASK_UTILS``: ``AttentionMaskConverter._make_causal_mask`` and
the 4-D helpers); for exercise 3, :func:`course_utils.model.masks.position_ids_from_attention_mask`
(one document at a time) and ``transformers``' ``DataCollatorWithFlattening``; for exercise 4, chapter 05's
``masked_mean`` (and its private twin) and chapter 06's ``masked_lm_loss``. Exercise 2 may still build on the package's
``causal_mask``.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import torch

from course_utils import checks
from course_utils.model import masks
from course_utils.model.attention import scaled_dot_product_attention
from course_utils.model.masks import causal_mask

WINDOW_HINT = ("Query i may attend to key j when i - left <= j <= i + right, both ends included; -1 means no limit "
               "on that side. Rows are queries, columns keys; a boolean mask, true where attention is allowed (not "
               "the additive 0 / -inf form).")
DOC_HINT = ("Allowed: key j in the same document as query i, and j <= i (rows are queries, columns keys); a boolean "
            "mask, true where attention is allowed (not the additive 0 / -inf form).")
POSITION_HINT = ("Each document's first token has position 0, the next 1, and so on; padding (-1) is not counted, "
                 "and each row is counted on its own (a document cut at the end of a row starts again at 0 in the "
                 "next row). "
                 "Only real tokens are checked; padding may hold any value while a document mask blocks it.")
MLM_HINT = ("Average the cross-entropy of the ids over the positions where chosen is True, and only those, all of "
            "the batch at once: rows may have different numbers of chosen positions. Two ways: pick the chosen "
            "positions out with the boolean mask, or give cross_entropy targets that its ignore_index skips where "
            "nothing was chosen. A softmax written out as exp / sum(exp) overflows on large logits; log_softmax does "
            "not.")


def _window_by_loops(T: int, left: int, right: int) -> torch.Tensor:
    mask = torch.zeros(T, T, dtype=torch.bool)
    for i in range(T):
        for j in range(T):
            mask[i, j] = (left < 0 or j >= i - left) and (right < 0 or j <= i + right)
    return mask


def _learner(fn: Callable, *args: Any, answers: tuple[Callable, ...] = ()) -> Any:
    """The learner's ``fn(*args)`` with this module's loop references switched off (each computes an answer), and
    ``answers``: the package's and libraries' functions that answer the exercise at hand."""
    off = [_window_by_loops, _document_mask_by_loops, _positions_by_loops, _mlm_loss_by_loops, *answers]
    with checks.package_functions_switched_off(*off):
        return fn(*args)


# transformers.masking_utils' mask functions and the factories that compose them (those a version lacks are skipped)
HF_MASKS = ("and_masks", "or_masks", "causal_mask_function", "bidirectional_mask_function", "sliding_window_overlay",
            "sliding_window_causal_mask_function", "sliding_window_bidirectional_overlay",
            "sliding_window_bidirectional_mask_function", "chunked_overlay", "chunked_causal_mask_function",
            "blockwise_overlay", "packed_sequence_mask_function", "add_offsets_to_mask_function", "sdpa_mask",
            "eager_mask")


# transformers.modeling_attn_mask_utils (deprecated, still shipped): causal masks with a sliding window,
# i - w <= j <= i; one band OR the transpose of another is exercise 1's answer (names a version lacks are skipped)
HF_ATTN_MASK_UTILS = ("AttentionMaskConverter._make_causal_mask", "AttentionMaskConverter.to_causal_4d",
                      "_create_4d_causal_attention_mask", "_prepare_4d_causal_attention_mask",
                      "_prepare_4d_causal_attention_mask_for_sdpa")


def _mask_answers(package_masks: bool) -> tuple[Callable, ...]:
    """Exercises 1 and 2: ``HF_MASKS``, and with ``package_masks`` (exercise 1) the package's mask builders and
    ``HF_ATTN_MASK_UTILS`` (they compose into exercise 1's answer; exercise 2 may build on a causal mask)."""
    package = (masks.causal_mask, masks.bidirectional_mask, masks.prefix_lm_mask, masks.sliding_window_mask,
               masks.key_padding_mask, masks.padding_mask) if package_masks else ()
    older = (checks.library_functions("transformers.modeling_attn_mask_utils", *HF_ATTN_MASK_UTILS)
             if package_masks else ())
    # model files' (left, right) window functions (Gemma 4's sliding_window_mask_function and its copies), if loaded
    copies = tuple(checks.loaded_transformers_copies(("sliding_window_mask_function",))) if package_masks else ()
    return package + older + copies + checks.library_functions("transformers.masking_utils", *HF_MASKS)


def check_window_mask(fn: Callable[[int, int, int], object]) -> None:
    """Exercise 1: ``fn(T, left, right)`` -> (T, T) mask in the flash-attn library's ``window_size=(left, right)``
    terms (flash-attn 2.3 and later)."""
    cases = [(4, 1, 0), (6, 2, 0), (5, 1, 1), (7, 2, 1), (7, 0, 3), (6, -1, 0), (5, -1, -1), (6, 3, -1),
             (1, 0, 0), (5, 9, 0), (8, 0, 0)]
    for n, (T, left, right) in enumerate(cases, start=1):
        answers = _mask_answers(package_masks=True)  # each call looks again: a model file the last call imported counts
        answer = _learner(fn, T, left, right, answers=answers)
        checks.check_equal(f"window case {n} of {len(cases)}", answer, _window_by_loops(T, left, right),
                           hint=WINDOW_HINT)  # the expected mask made after the learner's call (no frame holds it)


def _document_mask_by_loops(doc_ids: list[int]) -> torch.Tensor:
    T = len(doc_ids)
    return torch.tensor([[j <= i and doc_ids[j] == doc_ids[i] for j in range(T)] for i in range(T)])


def check_document_mask(fn: Callable[[torch.Tensor], object]) -> None:
    """Exercise 2: ``fn(doc_ids)`` -> (T, T) causal mask within each packed document; attention must then equal
    attention over each document separately."""
    answers = _mask_answers(package_masks=False)
    cases = ([0, 0, 0, 1, 1, 2], [0, 1, 1, 1], [3, 3, 3, 3, 3], [0, 1, 2, 3],
             [2, 2, 0, 0, 0, 1])  # ids are labels, not an order: an answer comparing them with >= fails the last
    for n, doc_ids in enumerate(cases, start=1):
        answer = _learner(fn, torch.tensor(doc_ids), answers=answers)
        checks.check_equal(f"documents, case {n} of {len(cases)}", answer, _document_mask_by_loops(doc_ids),
                           hint=DOC_HINT)  # the expected mask made after the learner's call
    doc_ids = torch.tensor([0, 0, 0, 1, 1, 2])
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(6, 8, generator=g) for _ in range(3))  # (T, D) each
    # (T, T) on the CPU, whatever form passed the cases above (a tensor on any device, a loop's list of rows)
    mask = checks.as_float_tensor("documents, packed", _learner(fn, doc_ids, answers=answers), DOC_HINT) != 0
    packed = scaled_dot_product_attention(q, k, v, mask)  # (T, D)
    separate = torch.cat([scaled_dot_product_attention(q[s], k[s], v[s], causal_mask(s.stop - s.start))
                          for s in (slice(0, 3), slice(3, 5), slice(5, 6))])  # (T, D)
    checks.check_close("packed attention equals attention per document", packed, separate, atol=1e-6, hint=DOC_HINT)


def _positions_by_loops(row: list[int]) -> list[int]:
    out, previous, count = [], None, 0
    for doc in row:
        count = count + 1 if doc == previous else 0
        out.append(count if doc >= 0 else 0)
        previous = doc
    return out


def _packed_cases() -> list[torch.Tensor]:
    cases = [torch.tensor([[-1, -1, 0, 0, 0, 1, 1], [0, 0, 1, 1, 1, 1, 1], [0, 0, 0, -1, -1, -1, -1]]),
             torch.tensor([[5, 5, 5, 5]]), torch.tensor([[-1, -1, -1, 2]]), torch.tensor([[0, 1, 2, 3, 4]]),
             # a row that starts with the document the row above ends with (no padding between): rows are separate
             torch.tensor([[0, 0, 0], [0, 0, -1]]), torch.tensor([[3, 3], [3, 3]])]
    g = torch.Generator().manual_seed(21)
    for _ in range(3):  # random rows: left padding, 1 to 4 documents of random length, right padding
        rows = []
        for _ in range(4):
            lengths = torch.randint(1, 6, (int(torch.randint(1, 5, (1,), generator=g)),), generator=g).tolist()
            row = [doc for doc, length in enumerate(lengths) for _ in range(length)]
            left = int(torch.randint(0, 4, (1,), generator=g))
            rows.append([-1] * left + row)
        width = max(map(len, rows))
        cases.append(torch.tensor([row + [-1] * (width - len(row)) for row in rows]))
    return cases


def check_packed_position_ids(fn: Callable[[torch.Tensor], object]) -> None:
    """Exercise 3: ``fn(doc_ids)`` with ``doc_ids`` (B, T), -1 = padding -> (B, T) position ids, exactly.

    Exact equality on the real tokens: a model with rotary positions gives the same logits for ids shifted by a
    constant, so comparing logits would let an off-by-one answer through.
    """
    cases = _packed_cases()
    answers = (masks.position_ids_from_attention_mask,
               *checks.library_functions("transformers.data.data_collator", "DataCollatorWithFlattening.__call__"))
    for n, doc_ids in enumerate(cases, start=1):
        answer = checks.as_float_tensor(f"position ids, case {n}", _learner(fn, doc_ids.clone(), answers=answers),
                                        POSITION_HINT)
        if tuple(answer.shape) != tuple(doc_ids.shape):
            raise AssertionError(f"position ids, case {n}: shape {tuple(answer.shape)}, expected "
                                 f"{tuple(doc_ids.shape)} (one id per token). {POSITION_HINT}")
        real = doc_ids >= 0
        expected = torch.tensor([_positions_by_loops(row) for row in doc_ids.tolist()])
        checks.check_equal(f"position ids of the real tokens, case {n} of {len(cases)}", answer[real],
                           expected[real], hint=POSITION_HINT)


def _mlm_loss_by_loops(logits: torch.Tensor, ids: torch.Tensor, chosen: torch.Tensor) -> float:
    total, count = 0.0, 0
    for b in range(ids.shape[0]):
        for t in range(ids.shape[1]):
            if chosen[b, t]:
                total -= torch.log_softmax(logits[b, t].double(), dim=-1)[ids[b, t]].item()
                count += 1
    return total / count


def check_mlm_loss(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], object], logits: torch.Tensor,
                   ids: torch.Tensor, chosen: torch.Tensor, model_loss: torch.Tensor) -> None:
    """Exercise 4: ``fn(logits, ids, chosen)`` -> mean cross-entropy over the chosen positions, equal to ``model_loss``.

    ``logits`` (B, T, V); ``ids`` (B, T) holds the original id at *every* position and ``chosen`` (B, T) is boolean,
    so there is no -100 for ``ignore_index`` to skip: the plain ``F.cross_entropy`` call averages over every position
    and fails. ``model_loss`` is the GPT's loss on the same logits with targets -100 where not chosen.
    """
    # copies: an answer that writes into its inputs must not change the notebook's tensors (.cpu() of a CPU tensor
    # is the same tensor)
    logits, ids = logits.detach().cpu().float().clone(), ids.detach().cpu().clone()
    chosen = chosen.detach().cpu().bool().clone()
    learner = functools.partial(_learner, fn, answers=(  # with a mean over a mask, a loss over labels not -100 off
        *checks.library_functions("course_utils.rlhf.losses", "masked_mean", "_masked_mean"),
        *checks.library_functions("course_utils.lora.sft", "masked_lm_loss")))
    checks.check_close("equals the model's ignore_index loss", learner(logits, ids, chosen),
                       float(model_loss), atol=1e-5, hint=MLM_HINT)  # a float: any one-element answer counts
    one_hot = torch.full((1, 3, 5), -30.0)  # exp(30) is finite in float32: a softmax written out does not overflow
    one_hot[0, 1, 2] = 30.0  # and the loss, 4 exp(-60) or about 4e-26, is 0 within the tolerance
    checks.check_close("a perfect prediction at the only chosen position costs 0",
                       learner(one_hot, torch.tensor([[4, 2, 0]]), torch.tensor([[False, True, False]])), 0.0,
                       atol=1e-6, hint=MLM_HINT)
    uniform = torch.zeros(2, 4, 8)  # every chosen position costs ln 8, whatever the number chosen
    uneven_ids = torch.tensor([[1, 0, 7, 2], [6, 3, 5, 4]])
    uneven = torch.tensor([[True, False, False, False], [False, True, True, False]])  # 1 and 2 chosen per row
    checks.check_close("uniform logits cost ln V per chosen position", learner(uniform, uneven_ids, uneven),
                       math.log(8), atol=1e-5, hint=MLM_HINT)
    logits = torch.randn(2, 4, 8, generator=torch.Generator().manual_seed(2))  # rows with 1 and 2 chosen positions
    answer = learner(logits.clone(), uneven_ids.clone(), uneven.clone())
    checks.check_close("random logits, rows with different numbers of chosen positions", answer,
                       _mlm_loss_by_loops(logits, uneven_ids, uneven), atol=1e-5, hint=MLM_HINT)  # made after the call
