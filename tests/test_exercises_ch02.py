"""Chapter 02's exercise checks accept every correct answer and reject the likely wrong ones, without revealing them."""

import math

import pytest
import torch

from course_utils.exercises import ch02 as ex
from course_utils.model import masks
from course_utils.train import mlm
from course_utils.solutions import ch02 as sol


from exercise_helpers import assert_hidden, rejects  # noqa: E402


def grid(T):
    return torch.arange(T)[:, None], torch.arange(T)[None, :]  # query i (T, 1), key j (1, T)


# ---- exercise 1: FlashAttention-style (left, right) window ----------------------------------------------------

def test_window_accepts_the_solution_and_other_correct_forms(capsys):
    ex.check_window_mask(sol.window_mask)
    ex.check_window_mask(lambda T, l, r: sol.window_mask(T, l, r).int().tolist())  # a list of 0/1
    ex.check_window_mask(lambda T, l, r: sol.window_mask(T, l, r).float())
    assert "[pass]" in capsys.readouterr().out


def off_by_one(T, left, right):  # j > i - left instead of >=: one key short on the left
    i, j = grid(T)
    return ((j > i - left) | (left < 0)) & ((j <= i + right) | (right < 0))


def transposed(T, left, right):
    return sol.window_mask(T, left, right).T


def sees_the_future(T, left, right):  # forgets the right-hand limit
    i, j = grid(T)
    return (j >= i - left) | (left < 0)


def package_sliding_window(T, left, right):  # the package function covers only (W - 1, 0) and symmetric windows
    return masks.sliding_window_mask(T, left + 1 if left >= 0 else T)


@pytest.mark.parametrize("wrong", [off_by_one, transposed, sees_the_future])
def test_window_rejects_likely_wrong_answers(wrong):
    message = rejects(ex.check_window_mask, wrong)
    assert "wrong" in message or "shape" in message


def test_window_rejects_the_package_sliding_window():  # wrong for lopsided windows, and switched off anyway
    assert "switched off" in rejects(ex.check_window_mask, package_sliding_window)


def package_composed(T, left, right):  # correct, but built from the package's masks instead of the inequality
    lower = masks.sliding_window_mask(T, left + 1) if left >= 0 else masks.causal_mask(T)   # i - left <= j <= i
    upper = masks.sliding_window_mask(T, right + 1).T if right >= 0 else masks.causal_mask(T).T  # i <= j <= i + right
    return lower | upper


def test_window_refuses_an_answer_composed_from_the_package_masks():
    for T, left, right in [(7, 2, 1), (6, -1, 0), (5, -1, -1), (6, 3, -1), (5, 9, 0), (1, 0, 0)]:
        assert torch.equal(package_composed(T, left, right), sol.window_mask(T, left, right))  # it IS correct
    message = rejects(ex.check_window_mask, package_composed)
    assert "switched off" in message
    assert torch.equal(masks.causal_mask(3), torch.ones(3, 3, dtype=torch.bool).tril())  # restored afterwards


def test_window_accepts_plain_torch_without_the_package():
    ex.check_window_mask(lambda T, l, r: torch.ones(T, T, dtype=torch.bool).tril(r if r >= 0 else T)
                         & torch.ones(T, T, dtype=torch.bool).triu(-l if l >= 0 else -T))


def test_window_failure_does_not_reveal_the_answer():
    message = rejects(ex.check_window_mask, off_by_one)
    assert "True" not in message and "tensor(" not in message and "[[" not in message


# ---- exercise 2: document-causal mask ---------------------------------------------------------------------------

def test_document_mask_accepts_correct_forms():
    ex.check_document_mask(sol.document_causal_mask)
    ex.check_document_mask(lambda d: sol.document_causal_mask(d).long().tolist())
    ex.check_document_mask(lambda d: list(sol.document_causal_mask(d)))  # a loop's rows (crashed the packed part)


def test_window_accepts_a_loops_rows_at_every_length_one_included():
    ex.check_window_mask(lambda T, l, r: [row for row in sol.window_mask(T, l, r)])  # T = 1: one row of one entry


@pytest.mark.parametrize("wrong", [
    lambda d: d[:, None] == d[None, :],  # same document, but sees the future
    lambda d: masks.causal_mask(len(d)),  # causal, but crosses documents
    lambda d: sol.document_causal_mask(d).T,  # transposed: the upper triangle
    # right only while documents are numbered in increasing order: earlier documents have smaller ids
    lambda d: masks.causal_mask(len(d)) & (d[None, :] >= d[:, None]),
    lambda d: masks.causal_mask(len(d)) & (torch.arange(len(d))[None, :] >= torch.searchsorted(d, d)[:, None]),
])
def test_document_mask_rejects_likely_wrong_answers(wrong):
    rejects(ex.check_document_mask, wrong)


# ---- exercise 3: position ids of packed, padded rows -----------------------------------------------------------

def test_position_ids_accept_correct_forms():
    ex.check_packed_position_ids(sol.packed_position_ids)
    ex.check_packed_position_ids(lambda d: sol.packed_position_ids(d).tolist())
    ex.check_packed_position_ids(lambda d: sol.packed_position_ids(d).int())
    ex.check_packed_position_ids(lambda d: sol.packed_position_ids(d).masked_fill(d < 0, 1))  # any pad value


def starting_at_one(d):
    return sol.packed_position_ids(d) + 1


def counted_over_padding(d):  # restarts per document, but the left padding is counted into the first document
    filled = d.clone()
    for row in filled:
        real = (row >= 0).nonzero()
        if len(real):
            row[: real[0, 0]] = row[real[0, 0]]
    return sol.packed_position_ids(filled)


def whole_row_arange(d):
    return torch.arange(d.shape[1]).expand_as(d).clone()


def no_restart_per_document(d):  # the package's left-padding position ids: right for one document per row only
    return masks.position_ids_from_attention_mask((d >= 0).long())


def wrong_shape(d):
    return sol.packed_position_ids(d)[:, :-1]


def restarts_only_where_the_flattened_id_changes(d):  # a 1-D answer on d.flatten(): a row that starts with the
    flat = d.flatten()                                 # document the previous row ended with keeps counting
    start = torch.ones_like(flat, dtype=torch.bool)
    start[1:] = flat[1:] != flat[:-1]
    index = torch.arange(len(flat))
    return (index - torch.cummax(torch.where(start, index, 0), 0).values).view_as(d)


@pytest.mark.parametrize("wrong", [starting_at_one, counted_over_padding, whole_row_arange, no_restart_per_document,
                                   wrong_shape, restarts_only_where_the_flattened_id_changes])
def test_position_ids_reject_likely_wrong_answers(wrong):
    message = rejects(ex.check_packed_position_ids, wrong)
    assert "tensor(" not in message


# ---- exercise 4: MLM loss ---------------------------------------------------------------------------------------

def model_loss_of(logits, ids, chosen):  # what the GPT returns: targets -100 where not chosen, ignore_index skips them
    targets = ids.masked_fill(~chosen, -100)
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)


def mlm_data():  # random positions: rows have different numbers of chosen positions
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 6, 11, generator=g)
    ids = torch.randint(0, 11, (3, 6), generator=g)
    chosen = torch.rand(3, 6, generator=g) <= 0.4
    chosen[:, 0] = True  # at least one chosen position per row
    return logits, ids, chosen, model_loss_of(logits, ids, chosen)


def mlm_data_like_the_notebook():  # mlm.mask_tokens chooses exactly round(0.15 T) positions in every row
    ids = torch.randint(0, 65, (4, 16), generator=torch.Generator().manual_seed(4))
    _, targets = mlm.mask_tokens(ids, 65, 65, torch.Generator().manual_seed(5))
    chosen = targets != -100
    assert len(set(chosen.sum(1).tolist())) == 1  # the same count in every row
    logits = torch.randn(4, 16, 66, generator=torch.Generator().manual_seed(6))
    return logits, ids, chosen, model_loss_of(logits, ids, chosen)


MLM_DATA = [mlm_data, mlm_data_like_the_notebook]


@pytest.mark.parametrize("data", MLM_DATA)
def test_mlm_loss_accepts_correct_forms(data):
    ex.check_mlm_loss(sol.mlm_loss, *data())
    ex.check_mlm_loss(lambda lg, ids, ch: float(sol.mlm_loss(lg, ids, ch)), *data())
    ex.check_mlm_loss(lambda lg, ids, ch: torch.nn.functional.cross_entropy(  # ignore_index, after selecting
        lg.flatten(0, 1), ids.masked_fill(~ch, -100).flatten()), *data())
    ex.check_mlm_loss(lambda lg, ids, ch: torch.nn.functional.cross_entropy(lg[ch], ids[ch]).reshape(1), *data())


def per_row_mean(lg, ids, ch):  # a mean per row, then the mean of the rows: wrong when rows differ in count
    ce = torch.nn.functional.cross_entropy(lg.transpose(1, 2), ids, reduction="none")  # (B, T)
    return ((ce * ch).sum(1) / ch.sum(1)).mean()


@pytest.mark.parametrize("data", MLM_DATA)
@pytest.mark.parametrize("wrong", [
    lambda lg, ids, ch: torch.nn.functional.cross_entropy(lg[ch], ids[ch], reduction="sum"),
    lambda lg, ids, ch: torch.nn.functional.cross_entropy(lg.flatten(0, 1), ids.flatten(), ignore_index=-100),
    lambda lg, ids, ch: torch.nn.functional.cross_entropy(lg[~ch], ids[~ch]),  # the positions not chosen
    lambda lg, ids, ch: -torch.log_softmax(lg, -1).amax(-1)[ch].mean(),  # loss of the argmax, not the id
    per_row_mean,
], ids=["sum", "plain_ignore_index_call", "not_chosen", "argmax", "per_row_mean"])
def test_mlm_loss_rejects_likely_wrong_answers(wrong, data):
    logits, ids, chosen, loss = data()
    assert_hidden(rejects(ex.check_mlm_loss, wrong, logits, ids, chosen, loss), [loss, math.log(8)])


def softmax_written_out(lg, ids, ch):  # right, and exact on the notebook's logits: exp of every logit, no max taken
    p = lg.exp() / lg.exp().sum(-1, keepdim=True)
    return -p.gather(-1, ids[..., None])[..., 0][ch].log().mean()


@pytest.mark.parametrize("data", MLM_DATA)
def test_mlm_loss_accepts_a_softmax_written_out(data):  # its perfect-prediction case once had logits of 1e4: NaN
    ex.check_mlm_loss(softmax_written_out, *data())


# ---- every exercise: the check's own loop references are answers too, and are switched off -------------------

@pytest.mark.parametrize("check, loop_answer, data", [
    (ex.check_window_mask, lambda T, l, r: ex._window_by_loops(T, l, r), ()),
    (ex.check_document_mask, lambda d: ex._document_mask_by_loops(d.tolist()), ()),
    (ex.check_packed_position_ids, lambda d: [ex._positions_by_loops(row) for row in d.tolist()], ()),
    (ex.check_mlm_loss, lambda lg, ids, ch: ex._mlm_loss_by_loops(lg, ids, ch), None),
], ids=["window", "document", "positions", "mlm_loss"])
def test_checks_refuse_their_own_loop_references(check, loop_answer, data):
    args = mlm_data() if data is None else data
    assert "switched off" in rejects(check, loop_answer, *args)
    assert ex._positions_by_loops([0, 0, -1]) == [0, 1, 0]  # restored afterwards


# ---- added by the mutation audit: wrong answers that only some of the check's cases catch

def minus_one_taken_literally(T, left, right):  # no special case for -1: "i + 1 <= j" and "j <= i - 1"
    i, j = grid(T)
    return (j >= i - left) & (j <= i + right)


def test_window_rejects_an_answer_without_the_no_limit_case():
    assert torch.equal(minus_one_taken_literally(7, 2, 1), sol.window_mask(7, 2, 1))  # right for real limits
    rejects(ex.check_window_mask, minus_one_taken_literally)


def document_zero_taken_for_padding(d):  # pad id 0, as many tokenizers have it: document 0 gets no positions
    return sol.packed_position_ids(d).masked_fill(d == 0, 0)


def test_position_ids_check_the_tokens_of_document_zero():
    rejects(ex.check_packed_position_ids, document_zero_taken_for_padding)


# ---- every exercise: the library and package functions that answer it are switched off --------------------------
# Each route is right when nothing is switched off (so each test can fail), is refused by the check, and works again
# afterwards (the switch is restored), when a right answer passes too.

def _window_parts(T, left, right):  # transformers' mask functions for i - left <= j <= i + right
    from transformers import masking_utils as mu
    parts = [mu.bidirectional_mask_function]
    if left >= 0:
        parts.append(mu.sliding_window_overlay(left + 1))  # j > i - (left + 1)
    if right >= 0:
        parts.append(mu.add_offsets_to_mask_function(mu.causal_mask_function, right, 0))  # j <= i + right
    return mu.and_masks(*parts)


def window_via_sdpa_mask(T, left, right):  # composed, then materialised by sdpa_mask (the notebook shows it)
    from transformers import masking_utils as mu
    return mu.sdpa_mask(batch_size=1, q_length=T, kv_length=T, mask_function=_window_parts(T, left, right),
                        allow_is_causal_skip=False, allow_is_bidirectional_skip=False)[0, 0]


def window_via_mask_functions(T, left, right):  # the composed mask function called on index grids
    return _window_parts(T, left, right)(0, 0, *grid(T)).expand(T, T)


def _window_from_causal_bands(T, left, right, causal_band):  # band(w): i - w <= j <= i; None: causal, no limit
    band = lambda w: torch.eye(T, dtype=torch.bool) if w == 0 else causal_band(w)  # w = 0: the diagonal alone
    return band(left if left >= 0 else None) | band(right if right >= 0 else None).T


def window_via_attention_mask_converter(T, left, right):  # transformers' older mask helpers: two causal bands
    AttentionMaskConverter = pytest.importorskip("transformers.modeling_attn_mask_utils").AttentionMaskConverter
    return _window_from_causal_bands(T, left, right, lambda w: AttentionMaskConverter._make_causal_mask(
        (1, T), torch.float32, "cpu", sliding_window=w)[0, 0] == 0)


def window_via_4d_causal_mask(T, left, right):  # the module's 4-D helper, which reaches the same bands
    helpers = pytest.importorskip("transformers.modeling_attn_mask_utils")  # deprecated: a later version may drop it
    return _window_from_causal_bands(T, left, right, lambda w: helpers._create_4d_causal_attention_mask(
        (1, T), torch.float32, "cpu", sliding_window=w)[0, 0] == 0)


def window_via_a_model_file_copy(T, left, right):  # Gemma 4's (left, right) window function, imported in the call
    gemma4 = pytest.importorskip("transformers.models.gemma4.modeling_gemma4")  # a later version may move it
    size = lambda w: T + 1 if w < 0 else w + 1  # its window counts the query position itself
    i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]  # (T, 1), (1, T)
    return gemma4.sliding_window_mask_function((size(left), size(right)))(0, 0, i, j)


def document_via_sdpa_mask(d):
    from transformers import masking_utils as mu
    both = mu.and_masks(mu.causal_mask_function, mu.packed_sequence_mask_function(d[None]))
    return mu.sdpa_mask(batch_size=1, q_length=len(d), kv_length=len(d), mask_function=both,
                        allow_is_causal_skip=False)[0, 0]


def document_via_blockwise_overlay(d):  # the same-document part from transformers, the causal part by hand
    from transformers import masking_utils as mu
    same = mu.sdpa_mask(batch_size=1, q_length=len(d), kv_length=len(d), mask_function=mu.blockwise_overlay(d[None]),
                        allow_is_causal_skip=False)[0, 0]
    return same & torch.ones(len(d), len(d), dtype=torch.bool).tril()


def document_via_mask_functions(d):
    from transformers import masking_utils as mu
    return mu.and_masks(mu.causal_mask_function, mu.packed_sequence_mask_function(d[None]))(0, 0, *grid(len(d)))


def positions_via_the_package_per_document(d):  # the package's left-padding position ids, one document at a time
    out = torch.zeros_like(d)
    for doc in d.unique().tolist():
        if doc >= 0:
            out = torch.where(d == doc, masks.position_ids_from_attention_mask((d == doc).long()), out)
    return out


def positions_via_the_flattening_collator(d):  # transformers' collator, fed one feature per run of equal ids
    from transformers import DataCollatorWithFlattening
    collator, out = DataCollatorWithFlattening(return_tensors="pt"), torch.zeros_like(d)
    for b, row in enumerate(d):
        _, lengths = torch.unique_consecutive(row, return_counts=True)
        out[b] = collator([{"input_ids": [0] * int(n)} for n in lengths])["position_ids"][0]
    return out


def _per_position_loss(lg, ids):
    return torch.nn.functional.cross_entropy(lg.transpose(1, 2), ids, reduction="none")  # (B, T)


def mlm_via_masked_mean(lg, ids, ch):  # chapter 05's mean over a mask
    from course_utils.rlhf.losses import masked_mean
    return masked_mean(_per_position_loss(lg, ids), ch)


def mlm_via_the_private_masked_mean(lg, ids, ch):
    from course_utils.rlhf.losses import _masked_mean
    return _masked_mean(_per_position_loss(lg, ids), ch)


def mlm_via_the_sft_loss(lg, ids, ch):  # chapter 06's loss over labels not -100, its shift undone by a column
    from course_utils.lora.sft import masked_lm_loss
    B, _, V = lg.shape
    return masked_lm_loss(torch.cat([lg, torch.zeros(B, 1, V)], 1),
                          torch.cat([torch.full((B, 1), -100), ids.masked_fill(~ch, -100)], 1))


def _right_outside_the_check(check, route):
    if check is ex.check_window_mask:
        return all(torch.equal(torch.as_tensor(route(*c)), sol.window_mask(*c)) for c in [(7, 2, 1), (6, -1, 0)])
    if check is ex.check_document_mask:
        d = torch.tensor([0, 0, 0, 1, 1, 2])
        return torch.equal(torch.as_tensor(route(d)).bool(), sol.document_causal_mask(d))
    if check is ex.check_packed_position_ids:
        d = ex._packed_cases()[0]
        return torch.equal(route(d)[d >= 0], sol.packed_position_ids(d)[d >= 0])
    logits, ids, chosen, loss = mlm_data()
    return abs(float(route(logits, ids, chosen)) - float(loss)) < 1e-6


LIBRARY_ROUTES = [  # (check, route, what the message names, a right answer)
    (ex.check_window_mask, window_via_sdpa_mask, "transformers.masking_utils.", sol.window_mask),
    (ex.check_window_mask, window_via_mask_functions, "transformers.masking_utils.", sol.window_mask),
    (ex.check_window_mask, window_via_attention_mask_converter, "modeling_attn_mask_utils.", sol.window_mask),
    (ex.check_window_mask, window_via_4d_causal_mask, "modeling_attn_mask_utils.", sol.window_mask),
    (ex.check_window_mask, window_via_a_model_file_copy, "sliding_window_mask_function", sol.window_mask),
    (ex.check_document_mask, document_via_sdpa_mask, "transformers.masking_utils.", sol.document_causal_mask),
    (ex.check_document_mask, document_via_blockwise_overlay, "masking_utils.blockwise_overlay",
     sol.document_causal_mask),
    (ex.check_document_mask, document_via_mask_functions, "transformers.masking_utils.", sol.document_causal_mask),
    (ex.check_packed_position_ids, positions_via_the_package_per_document, "position_ids_from_attention_mask",
     sol.packed_position_ids),
    (ex.check_packed_position_ids, positions_via_the_flattening_collator, "DataCollatorWithFlattening.__call__",
     sol.packed_position_ids),
    (ex.check_mlm_loss, mlm_via_masked_mean, "losses.masked_mean", sol.mlm_loss),
    (ex.check_mlm_loss, mlm_via_the_private_masked_mean, "losses._masked_mean", sol.mlm_loss),
    (ex.check_mlm_loss, mlm_via_the_sft_loss, "sft.masked_lm_loss", sol.mlm_loss),
]


@pytest.mark.parametrize("check, route, where, right", LIBRARY_ROUTES, ids=[r[1].__name__ for r in LIBRARY_ROUTES])
def test_checks_refuse_library_and_package_answers_and_restore_them(check, route, where, right):
    args = mlm_data() if check is ex.check_mlm_loss else ()
    assert _right_outside_the_check(check, route)
    message = rejects(check, route, *args)
    assert "switched off" in message and where in message, message
    assert _right_outside_the_check(check, route)  # restored
    check(right, *args)


def test_mlm_loss_check_leaves_the_notebooks_logits_alone():  # an answer that writes into its inputs
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    logits, ids = torch.randn(2, 6, 9, generator=g), torch.randint(0, 9, (2, 6), generator=g)
    chosen = torch.tensor([[True, False, False, True, False, False], [False, True, False, False, False, True]])
    loss = F.cross_entropy(logits.view(-1, 9), ids.masked_fill(~chosen, -100).view(-1))
    before = logits.clone()

    def zeroes_logits(lg, i, c):
        out = F.cross_entropy(lg[c], i[c])
        lg.zero_()
        return out

    ex.check_mlm_loss(zeroes_logits, logits, ids, chosen, loss)
    assert torch.equal(logits, before)
