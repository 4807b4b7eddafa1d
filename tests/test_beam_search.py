"""Tests for course_utils.generate.beam_search: a hand-made example where beam search beats greedy, and agreement with
transformers' beam search on a tiny random Llama."""

import math

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from course_utils.generate.beam_search import beam_search, gpt_next_logits_fn, hf_next_logits_fn
from course_utils.model.gpt import GPT, GPTConfig


def table_model(table):
    """logits_fn from a dict: last token -> next-token probabilities over vocabulary {0: EOS, 1, 2, 3}."""
    def logits_fn(ids):
        return torch.stack([torch.tensor(table[int(row[-1])]).log() for row in ids])
    return logits_fn


TABLE = {  # greedy takes 1 (0.5) then 1 -> 0.4 max; beam finds 2 (0.4) then 3 (0.9): 0.36 > 0.2
    9: [1e-9, 0.5, 0.4, 0.1],
    1: [0.2, 0.4, 0.3, 0.1],
    2: [0.05, 0.03, 0.02, 0.9],
    3: [0.9, 0.04, 0.03, 0.03],
}


def test_beam_beats_greedy_by_hand():
    fn = table_model(TABLE)
    greedy = beam_search(fn, torch.tensor([9]), num_beams=1, max_new_tokens=2)
    beam = beam_search(fn, torch.tensor([9]), num_beams=2, max_new_tokens=2)
    assert greedy.ids.tolist() == [9, 1, 1]
    assert beam.ids.tolist() == [9, 2, 3]
    assert beam.score == pytest.approx(math.log(0.4 * 0.9) / 2)


def tree_model(tree, vocab_size=10):
    """logits_fn from a dict: generated prefix (tuple) -> {token: probability}; missing tokens get ~0."""
    def logits_fn(ids):
        rows = []
        for row in ids:
            probs = torch.full((vocab_size,), 1e-12, dtype=torch.float64)
            for token, p in tree[tuple(row[1:].tolist())].items():
                probs[token] = p
            rows.append(probs.log())
        return torch.stack(rows)
    return logits_fn


UNIFORM = {t: 0.1 for t in range(10)}
PRUNING_TREE = {  # greedy's prefix (1, x) scores 0.04 < 0.175 of both (2, 4) and (2, 5), so 2 beams prune it
    (): {1: 0.4, 2: 0.35, 3: 0.25},
    (1,): UNIFORM, (2,): {4: 0.5, 5: 0.5}, (3,): UNIFORM,
    **{(1, t): {6: 1.0} for t in range(10)}, (2, 4): UNIFORM, (2, 5): UNIFORM,
}


def test_beam_search_can_lose_to_greedy():
    # Not a theorem that beam search beats greedy: here greedy's path is pruned at step 2 and the beams that
    # pruned it collapse at step 3. Greedy: 0.4 * 0.1 * 1.0 = 0.04; two beams: 0.35 * 0.5 * 0.1 = 0.0175.
    fn = tree_model(PRUNING_TREE)
    greedy = beam_search(fn, torch.tensor([9]), num_beams=1, max_new_tokens=3)
    beam = beam_search(fn, torch.tensor([9]), num_beams=2, max_new_tokens=3)
    assert greedy.ids[:2].tolist() == [9, 1] and greedy.ids[3] == 6  # any of the tied second tokens
    assert beam.ids[:2].tolist() == [9, 2]
    assert greedy.score * 3 == pytest.approx(math.log(0.04))
    assert beam.score * 3 == pytest.approx(math.log(0.0175))
    assert beam.score < greedy.score


def test_eos_finishes_hypotheses_with_length_normalisation():
    fn = table_model(TABLE)
    out = beam_search(fn, torch.tensor([9]), num_beams=2, max_new_tokens=5, eos_token_id=0)
    assert out.ids.tolist() == [9, 2, 3, 0]  # 0.4 * 0.9 * 0.9, normalised by 3 tokens
    assert out.score == pytest.approx(math.log(0.4 * 0.9 * 0.9) / 3)


@pytest.mark.parametrize("seed", range(4))
def test_matches_transformers_beam_search(seed):
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         bos_token_id=None, eos_token_id=None, pad_token_id=None)
    tiny = LlamaForCausalLM(config).eval()
    prompt = torch.randint(0, 64, (6,), generator=torch.Generator().manual_seed(seed))
    theirs = tiny.generate(prompt[None], attention_mask=torch.ones(1, 6, dtype=torch.long), max_new_tokens=8,
                           num_beams=3, do_sample=False)
    assert torch.equal(beam_search(hf_next_logits_fn(tiny), prompt, 3, 8).ids, theirs[0])


def test_matches_transformers_beam_search_with_eos_and_length_penalty():
    # A tiny random Llama whose EOS (id 0) is made likely, so hypotheses finish at EOS and the length penalty decides
    # between finished ones of different lengths: covers the ranking sum(ln p) / L**alpha and the stopping rule.
    answers, ended_at_eos = {}, 0
    for seed in (0, 1, 2, 5):
        torch.manual_seed(seed)
        config = LlamaConfig(vocab_size=12, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                             bos_token_id=None, eos_token_id=0, pad_token_id=0)
        tiny = LlamaForCausalLM(config).eval()
        with torch.no_grad():
            tiny.lm_head.weight[0] += 0.8 * torch.randn(32)  # (V, d): raise EOS's logit
        prompt = torch.randint(1, 12, (5,), generator=torch.Generator().manual_seed(seed))
        for alpha in (0.0, 1.0, 2.0):
            theirs = tiny.generate(prompt[None], attention_mask=torch.ones(1, 5, dtype=torch.long), max_new_tokens=10,
                                   num_beams=3, do_sample=False, eos_token_id=0, pad_token_id=0,
                                   length_penalty=alpha)[0].tolist()
            if 0 in theirs[5:]:  # an answer ends at its first EOS (anything after it would be padding)
                theirs = theirs[:5 + theirs[5:].index(0) + 1]
                ended_at_eos += 1
            ours = beam_search(hf_next_logits_fn(tiny), prompt, 3, 10, eos_token_id=0, length_penalty=alpha).ids
            assert ours.tolist() == theirs, (seed, alpha)
            answers[seed, alpha] = theirs
    assert ended_at_eos >= 8  # most answers end at EOS, so finished hypotheses are compared
    assert any(answers[seed, 0.0] != answers[seed, 2.0] for seed in (0, 1, 2, 5))  # the penalty changes answers


def test_one_beam_is_greedy_on_course_gpt():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=20, block_size=32, n_layer=1, n_head=2, n_embd=16)).eval()
    prompt = torch.tensor([1, 2, 3])
    assert torch.equal(beam_search(gpt_next_logits_fn(model), prompt, 1, 10).ids, model.generate(prompt[None], 10,
                                                                                            greedy=True)[0])


def test_errors():
    with pytest.raises(ValueError, match="num_beams"):
        beam_search(table_model(TABLE), torch.tensor([9]), 0, 2)
    with pytest.raises(ValueError, match="1-D"):
        beam_search(table_model(TABLE), torch.tensor([[9]]), 2, 2)


def eos_tree_model(tree):
    """logits_fn from a dict: generated prefix (tuple) -> {token: probability} over {0: EOS, 1, 2, 3}; missing tokens
    get ~0, and a prefix not in the dict ends with certainty (EOS 1.0)."""
    def logits_fn(ids):
        rows = []
        for row in ids:
            probs = torch.full((4,), 1e-12, dtype=torch.float64)
            for token, p in tree.get(tuple(row[1:].tolist()), {0: 1.0}).items():
                probs[token] = p
            rows.append(probs.log())
        return torch.stack(rows)
    return logits_fn


def test_eos_candidates_outside_the_top_beams_are_dropped():
    # step 2 ranks [1, EOS] 0.4, [2, 3] 0.22, [2, EOS] 0.18, [1, 3] 0.1: the EOS at rank 2 (= num_beams) is not kept
    tree = {(): {1: 0.5, 2: 0.4, 3: 0.1}, (1,): {0: 0.8, 3: 0.2}, (2,): {3: 0.55, 0: 0.45}}
    out = beam_search(eos_tree_model(tree), torch.tensor([9]), num_beams=2, max_new_tokens=2, eos_token_id=0)
    assert [h.tolist() for _, h in out.hypotheses] == [[9, 1, 0], [9, 2, 3], [9, 1, 3]]
    assert [s for s, _ in out.hypotheses] == pytest.approx([math.log(0.4) / 2, math.log(0.22) / 2, math.log(0.1) / 2])


def test_search_stops_when_the_best_beam_only_ties_the_worst_finished():
    # equal logits give exact log-probabilities -ln 2: after step 2 the finished [EOS] (-ln2 / 1) and [1, EOS]
    # (-2 ln2 / 2) tie the running [1, 2] (-2 ln2 / 2), so the heuristic stops (as transformers: improvement needs >);
    # searching on would find [1, 2, 3, EOS] at -2 ln2 / 4
    allowed = {(): [0, 1], (1,): [0, 2], (1, 2): [3], (1, 2, 3): [0]}

    def logits_fn(ids):
        rows = torch.full((ids.shape[0], 4), -1e4, dtype=torch.float64)
        for n, row in enumerate(ids):
            rows[n, allowed.get(tuple(row[1:].tolist()), [0])] = 0.0
        return rows

    out = beam_search(logits_fn, torch.tensor([9]), num_beams=2, max_new_tokens=5, eos_token_id=0)
    assert out.score == -math.log(2)
    assert out.ids.shape[0] <= 3


def test_min_gap_counts_the_eos_decisions():
    # the rank num_beams - 1 against rank num_beams decides whether an EOS candidate is admitted: 0.26 against 0.24
    tree = {(): {1: 0.5, 0: 0.26, 2: 0.24}}
    out = beam_search(eos_tree_model(tree), torch.tensor([9]), num_beams=2, max_new_tokens=1, eos_token_id=0)
    assert out.min_gap == pytest.approx(math.log(0.26 / 0.24))
    # which finished hypotheses survive: [2, EOS] ln(0.12) / 2 against [EOS] ln(0.3), the closest decision here
    tree = {(): {1: 0.5, 0: 0.3, 2: 0.2}, (1,): {0: 0.9, 3: 0.1}, (2,): {0: 0.6, 3: 0.4}}
    out = beam_search(eos_tree_model(tree), torch.tensor([9]), num_beams=2, max_new_tokens=2, eos_token_id=0)
    assert out.min_gap == pytest.approx(math.log(0.12) / 2 - math.log(0.3))
    # the stopping test at step 2: best running [2, 3] ln(0.14) / 2 against the worst finished [EOS] ln(0.3)
    tree = {(): {1: 0.5, 0: 0.3, 2: 0.2}, (1,): {0: 0.9, 3: 0.1}, (2,): {0: 0.3, 3: 0.7}}
    out = beam_search(eos_tree_model(tree), torch.tensor([9]), num_beams=2, max_new_tokens=3, eos_token_id=0)
    assert out.min_gap == pytest.approx(math.log(0.14) / 2 - math.log(0.3))


def test_bad_length_penalties_token_ids_and_eos_are_refused():
    fn = table_model(TABLE)
    for bad in (math.nan, math.inf, -math.inf, True, None):  # NaN gave NaN scores; -inf a ZeroDivisionError
        with pytest.raises(ValueError, match="length_penalty must be a finite number"):
            beam_search(fn, torch.tensor([9]), 2, 2, length_penalty=bad)
    with pytest.raises(TypeError, match="prompt must hold integer token ids"):
        beam_search(fn, torch.tensor([9.0]), 2, 2)  # was an embedding or indexing error inside logits_fn
    for bad in (-1, 2.5, True):  # never matched a token: EOS was silently ignored
        with pytest.raises(ValueError, match="eos_token_id must be None or a token id"):
            beam_search(fn, torch.tensor([9]), 2, 2, eos_token_id=bad)
    ours = beam_search(fn, torch.tensor([9]), np.int64(2), np.int64(2), length_penalty=np.float32(1.0))
    expected = beam_search(fn, torch.tensor([9]), 2, 2)
    assert torch.equal(ours.ids, expected.ids) and ours.score == expected.score  # numpy numbers were refused
