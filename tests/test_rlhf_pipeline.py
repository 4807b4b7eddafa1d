"""Chapter 05's pipeline pieces: the word codec, line data, rollouts, the hidden preference, the reward model, and
PPO, GRPO and DPO on tiny models and a toy reward that a few updates must raise."""

import copy
import math

import numpy as np
import pytest
import torch

from course_utils.device import make_generator
from course_utils.evaluate.diversity import distinct_n
from course_utils.model.gpt import GPT, GPTConfig
from course_utils.rlhf.data import (LineTask, encode_prompts, line_examples, make_sft_batch_fn, sample_prompts,
                                   sft_tensors)
from course_utils.rlhf.dpo import DPOConfig, pair_logps, sequence_logps, train_dpo
from course_utils.rlhf.grpo import GRPOConfig, grpo_loss, train_grpo
from course_utils.rlhf.pipeline import evaluate_policy, label_pairs
from course_utils.rlhf.ppo import PPOConfig, kl_shaped_rewards, sequence_kl, train_ppo
from course_utils.rlhf.preferences import Preference, bayes_accuracy, noisy_labels, true_score
from course_utils.rlhf.reward_model import ScalarHeadModel, pairwise_accuracy, train_reward_model
from course_utils.rlhf.rollout import (Rollout, decode_responses, response_logprobs, response_mask,
                                      sample_rollout)
from course_utils.text.codecs import WordCodec

TEXT = ("the king is dead and sweet love is gone.\nlong live the king, the fair and gentle king!\n"
        "i love thee, sweet; my love is true and good.\n") * 3


def tiny_gpt(vocab_size=12, block_size=16, seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=1, n_head=2, n_embd=16))


# ---------- the word codec ----------

def test_word_codec_round_trip_and_unknown_words():
    codec = WordCodec.from_texts([TEXT], vocab_size=8)
    assert codec.vocabulary[:2] == ("\n", "<unk>") and codec.vocab_size == 8
    ids = codec.encode("The KING is dead, long live...")
    assert codec.decode(ids).startswith("the king is")
    assert codec.unk_id in codec.encode("zebra")
    assert codec.decode(codec.encode("love, sweet!\nthe")) == "love <unk> sweet <unk>\nthe"  # no ',' or '!'
    big = WordCodec.from_texts([TEXT], vocab_size=40)
    assert big.decode(big.encode("Love, sweet!\nThe king.")) == "love, sweet!\nthe king."
    with pytest.raises(ValueError, match="vocab_size"):
        WordCodec.from_texts([TEXT], vocab_size=2)
    with pytest.raises(ValueError, match="without words"):
        WordCodec.from_texts([" \n\n "], vocab_size=10)


# ---------- line data and SFT tensors ----------

def test_line_examples_and_label_masked_sft_tensors():
    codec = WordCodec.from_texts([TEXT], vocab_size=40)
    task = LineTask(prompt_tokens=4, max_response=12, min_line=3, max_line=11)
    ids = codec.encode(TEXT)
    examples = line_examples(ids, codec, task)
    assert examples and all(len(p) == 4 and p[-1] == 0 and 3 <= len(line) <= 11 for p, line in examples)
    idx, targets = sft_tensors(examples, eos_id=0, task=task)
    assert idx.shape == targets.shape == (len(examples), task.length - 1)
    prompt, line = examples[0]
    assert (targets[0, :task.prompt_tokens - 1] == -100).all()  # no loss on the prompt
    learned = targets[0][targets[0] != -100].tolist()
    assert learned == line + [0]  # the line and its end token, nothing else
    get_batch = make_sft_batch_fn((idx, targets), (idx, targets), batch_size=5)
    x, y = get_batch("train", make_generator(0, "cpu"))
    assert x.shape == (5, task.length - 1)
    with pytest.raises(ValueError, match="min_line <= max_line < max_response"):
        LineTask(max_line=14, max_response=14)
    with pytest.raises(ValueError, match="LineTask.prompt_tokens must be a positive int, got True"):
        LineTask(prompt_tokens=True)  # a one-token prompt
    with pytest.raises(ValueError, match="exactly 4 tokens"):
        encode_prompts([[1, 2, 3]], task)


def test_line_examples_by_hand_and_seeded_draws():
    codec = WordCodec(("\n", "<unk>", "a", "b", "[", "]", "."))
    ids = [2, 3, 0, 2, 2, 2, 0, 6, 2, 2, 0, 2, 4, 2, 0, 3, 3, 3, 3, 3, 3, 0, 2, 2, 2, 0]
    task = LineTask(prompt_tokens=3, max_response=5, min_line=2, max_line=4)
    # lines: "a a a" (its prompt just fits), ". a a" (starts with a mark), "a [ a" (a bracket), six b's (too long),
    # "a a a"
    examples = line_examples(ids, codec, task)
    assert examples == [([2, 3, 0], [2, 2, 2]), ([3, 3, 0], [2, 2, 2])]
    assert line_examples(ids, codec, task, limit=1) == examples[:1]
    idx, targets = sft_tensors(examples, eos_id=0, task=task)
    get_batch = make_sft_batch_fn((idx, targets), (idx, targets), batch_size=6)
    torch.manual_seed(0)
    first = get_batch("train", make_generator(3, "cpu"))
    torch.manual_seed(1)  # the global generator plays no part
    again = get_batch("train", make_generator(3, "cpu"))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    pool = [([i, i, 0], [2, 2]) for i in range(10)]
    torch.manual_seed(0)
    prompts = sample_prompts(pool, 8, make_generator(2, "cpu"))
    torch.manual_seed(1)
    assert sample_prompts(pool, 8, make_generator(2, "cpu")) == prompts


# ---------- rollouts ----------

def test_response_mask_covers_up_to_the_first_end_token():
    response = torch.tensor([[5, 0, 7, 0], [5, 6, 7, 8], [0, 1, 2, 3]])
    mask, finished = response_mask(response, eos_id=0)
    assert mask.tolist() == [[True, True, False, False], [True] * 4, [True, False, False, False]]
    assert finished.tolist() == [True, False, True]


def test_response_logprobs_match_the_logits():
    model = tiny_gpt()
    ids = torch.randint(12, (3, 10), generator=make_generator(1, "cpu"))
    logp = response_logprobs(model, ids, prompt_len=4)  # (3, 6)
    logits, _ = model(ids)
    manual = torch.log_softmax(logits, -1)[:, 3:-1].gather(-1, ids[:, 4:, None]).squeeze(-1)
    torch.testing.assert_close(logp, manual)


def test_decode_responses_cut_before_the_end_token():
    codec = WordCodec.from_texts([TEXT], vocab_size=40)  # id 0 is the newline, the end token
    words = codec.encode("sweet love")
    response = torch.tensor([words + [0] + words[:1], words + words])  # the first ends after 2 words
    mask, finished = response_mask(response, eos_id=0)
    rollout = Rollout(torch.cat([torch.full((2, 2), words[0]), response], dim=1), 2, mask, finished)
    assert decode_responses(rollout, codec) == ["sweet love", "sweet love sweet love"]


def test_sequence_logps_sum_only_the_masked_response_tokens():
    model = tiny_gpt()
    ids = torch.randint(12, (2, 9), generator=make_generator(5, "cpu"))  # prompt 4 tokens, response 5
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0, 1.0]])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids)[0], dim=-1)  # position t predicts token t + 1
        expected = [sum(logp[row, 3 + r, ids[row, 4 + r]].item() for r in range(5) if mask[row, r]) for row in (0, 1)]
        assert sequence_logps(model, ids, mask, prompt_len=4).tolist() == pytest.approx(expected, rel=1e-5)


def test_sample_rollout_shapes_and_device_checks():
    model = tiny_gpt()
    prompts = torch.randint(12, (4, 5), generator=make_generator(2, "cpu"))
    rollout = sample_rollout(model, prompts, 6, eos_id=0, generator=make_generator(3, "cpu"))
    assert rollout.ids.shape == (4, 11) and rollout.mask.shape == (4, 6)
    assert torch.equal(rollout.ids[:, :5], prompts)
    assert (rollout.last_index == 5 + rollout.lengths - 1).all()
    with pytest.raises(ValueError, match="block_size"):
        sample_rollout(model, prompts, 12, 0, make_generator(3, "cpu"))
    with pytest.raises(ValueError, match="generator is on cpu but `prompts` is on meta"):
        sample_rollout(model, prompts.to("meta"), 3, 0, make_generator(3, "cpu"))  # as CUDA prompts would be


# ---------- the hidden preference and noisy labels ----------

def test_true_score_terms_by_hand():
    vocab = frozenset("my love is true and good the king dead".split())
    pref = Preference(min_words=3)
    assert true_score("my love is true", vocabulary=vocab, preference=pref) == pytest.approx(2.0)  # 2 pleasant
    assert true_score("love love love love", vocabulary=vocab, preference=pref) == pytest.approx(1 - 2 * 0.75)
    assert true_score("the king is dead", vocabulary=vocab, preference=pref) == pytest.approx(-1.0)  # one grim
    assert true_score("the xyzzy king", vocabulary=vocab, preference=pref) == pytest.approx(-2 / 3)
    assert true_score("the king", vocabulary=vocab, preference=pref) == pytest.approx(-0.5)  # one word short
    assert true_score("the king is", finished=False, vocabulary=vocab, preference=pref) == pytest.approx(-1.0)
    assert true_score("", vocabulary=vocab, preference=pref) == pref.empty_score


def test_noisy_labels_follow_bradley_terry():
    a, b = torch.full((40_000,), 1.0), torch.zeros(40_000)
    labels = noisy_labels(a, b, temperature=0.5, generator=make_generator(0, "cpu"))
    expected = 1 / (1 + math.exp(-2.0))
    assert abs(labels.float().mean().item() - expected) < 0.01
    assert bayes_accuracy(a, b, 0.5) == pytest.approx(expected, rel=1e-5)
    assert bayes_accuracy(b, a, 0.5) == pytest.approx(expected, rel=1e-5)  # P(b preferred) = 1 - expected
    with pytest.raises(ValueError, match="temperature"):
        noisy_labels(a, b, 0.0, make_generator(0, "cpu"))
    torch.manual_seed(1)  # the global generator's state must not matter: the labels come from the one passed
    first = noisy_labels(a[:200], b[:200], 0.5, make_generator(4, "cpu"))
    torch.manual_seed(2)
    assert torch.equal(noisy_labels(a[:200], b[:200], 0.5, make_generator(4, "cpu")), first)


# ---------- a toy RL problem: reward = how many times the response contains token 3 ----------

def toy_setup(seed=0):
    policy = tiny_gpt(seed=seed)
    prompts_gen = lambda n, g: torch.randint(4, 12, (n, 4), generator=g)  # noqa: E731
    count3 = lambda ro: ((ro.response == 3) & ro.mask).float().sum(1)  # noqa: E731
    return policy, prompts_gen, count3


def test_ppo_raises_a_toy_reward_and_kl_shaping_by_hand():
    scores = torch.tensor([2.0])
    logp, ref = torch.tensor([[-1.0, -2.0, -0.5]]), torch.tensor([[-1.5, -2.0, -0.1]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    shaped = kl_shaped_rewards(scores, logp, ref, mask, beta=0.1)
    torch.testing.assert_close(shaped, torch.tensor([[-0.05, 2.0, 0.0]]))  # -beta * 0.5, then 0 + score, masked
    torch.testing.assert_close(sequence_kl(logp, ref, mask), torch.tensor([0.5]))  # 0.5 + 0; the padded -0.4 left out
    full = kl_shaped_rewards(scores, logp, ref, torch.ones(1, 3), beta=0.1)  # the score is added to the last KL term
    torch.testing.assert_close(full, torch.tensor([[-0.05, 0.0, 2.04]]))
    policy, prompts, count3 = toy_setup()
    reference = copy.deepcopy(policy)
    value = ScalarHeadModel(policy)
    config = PPOConfig(iterations=12, batch_size=32, minibatch_size=16, epochs=2, lr=3e-3, beta=0.0,
                       max_new_tokens=8)
    history = train_ppo(policy, reference, value, count3, count3, prompts, 0, config, make_generator(0, "cpu"),
                        progress=False)
    assert sum(history.reward[-3:]) / 3 > sum(history.reward[:3]) / 3 + 0.5
    assert history.kl[0] == pytest.approx(0.0, abs=1e-5) and history.kl[-1] > 0


def test_ppo_feeds_gae_the_value_before_each_token_and_whitens_the_advantages(monkeypatch):
    import course_utils.rlhf.ppo as ppo

    rollouts, values_seen, advantages_seen = [], [], []
    real_sample, real_gae, real_loss = ppo.sample_rollout, ppo.gae_advantages, ppo.ppo_clip_loss
    monkeypatch.setattr(ppo, "sample_rollout", lambda *a, **k: rollouts.append(real_sample(*a, **k)) or rollouts[-1])
    monkeypatch.setattr(ppo, "gae_advantages", lambda r, v, *a: values_seen.append(v) or real_gae(r, v, *a))
    monkeypatch.setattr(ppo, "ppo_clip_loss", lambda lp, old, adv, *a, **k: advantages_seen.append((adv, k["mask"]))
                        or real_loss(lp, old, adv, *a, **k))
    policy, prompts, count3 = toy_setup()
    value = ScalarHeadModel(policy)
    torch.nn.init.normal_(value.head.weight, generator=make_generator(0, "cpu"))  # values that differ by position
    before = copy.deepcopy(value)
    config = PPOConfig(iterations=1, batch_size=16, minibatch_size=16, epochs=1, max_new_tokens=8)
    train_ppo(policy, copy.deepcopy(policy), value, count3, count3, prompts, 0, config, make_generator(0, "cpu"),
              progress=False)
    rollout = rollouts[0]
    P, mask = rollout.prompt_len, rollout.mask.float()
    with torch.no_grad():  # position P - 1 + t holds the state before response token t
        torch.testing.assert_close(values_seen[0], before(rollout.ids)[:, P - 1:-1] * mask)
    (advantages, m), = advantages_seen
    real = advantages[m.bool()]
    assert abs(real.mean().item()) < 1e-5 and real.std().item() == pytest.approx(1.0, rel=1e-4)  # whitened
    assert (advantages[~m.bool()] == 0).all()


def test_grpo_raises_a_toy_reward():
    policy, prompts, count3 = toy_setup(seed=1)
    reference = copy.deepcopy(policy)
    config = GRPOConfig(iterations=12, prompts_per_iteration=4, group_size=8, minibatch_groups=2, lr=3e-3,
                        max_new_tokens=8)
    history = train_grpo(policy, reference, count3, count3, prompts, 0, config, make_generator(0, "cpu"),
                         progress=False)
    assert sum(history.reward[-3:]) / 3 > sum(history.reward[:3]) / 3 + 0.5
    with pytest.raises(ValueError, match="group_size"):
        GRPOConfig(group_size=1)


def test_grpo_loss_by_hand_uses_k3_on_unmasked_tokens():
    # ratio 1 everywhere, so the surrogate is -A per token: mean over the 4 real tokens (-1 - 1 + 0.5 + 0.5) / 4;
    # log ratios to the reference 0.5, 0, 0, -0.5 give k3 = e^-lr - 1 + lr (k1 would average to 0); padding ignored
    logp = torch.tensor([[-1.0, -2.0, 7.0], [-0.5, -1.0, 3.0]], dtype=torch.float64)
    ref = torch.tensor([[-1.5, -2.0, 0.0], [-0.5, -0.5, 0.0]], dtype=torch.float64)
    mask = torch.tensor([[True, True, False], [True, True, False]])
    advantages = torch.tensor([1.0, -0.5], dtype=torch.float64)
    k3 = (math.exp(-0.5) - 0.5) + (math.exp(0.5) - 1.5)
    loss = grpo_loss(logp, logp.clone(), ref, advantages, mask, clip_eps=0.2, beta=0.1)
    assert loss.item() == pytest.approx(-0.25 + 0.1 * k3 / 4, rel=1e-12)


# ---------- reward model and DPO on labelled pairs of the toy problem ----------

def toy_pairs(n=192, seed=0):
    policy, prompts, count3 = toy_setup(seed)
    g = make_generator(seed, "cpu")
    p = prompts(n, g)
    first, second = sample_rollout(policy, p, 8, 0, g), sample_rollout(policy, p, 8, 0, g)
    labelled = label_pairs(first, second, count3, temperature=0.05, generator=g)
    return policy, labelled


def test_label_pairs_by_hand():
    # two responses to each of two prompts, scored by their count of token 3 (end token 0); at temperature 0.05 a
    # score difference of 2 gives P = sigmoid(40): the labeller picks the higher score
    prompts = torch.tensor([[4, 5], [6, 7]])

    def rollout(response):
        mask, finished = response_mask(response, eos_id=0)
        return Rollout(torch.cat([prompts, response], dim=1), 2, mask, finished)

    first = rollout(torch.tensor([[3, 3, 0, 9], [8, 0, 9, 9]]))  # scores 2, 0
    second = rollout(torch.tensor([[8, 0, 9, 9], [3, 8, 3, 0]]))  # scores 0, 2
    count3 = lambda ro: ((ro.response == 3) & ro.mask).float().sum(1)  # noqa: E731
    labelled = label_pairs(first, second, count3, temperature=0.05, generator=make_generator(0, "cpu"))
    pairs = labelled.pairs
    assert pairs.chosen.tolist() == [[4, 5, 3, 3, 0, 9], [6, 7, 3, 8, 3, 0]]
    assert pairs.rejected.tolist() == [[4, 5, 8, 0, 9, 9], [6, 7, 8, 0, 9, 9]]
    assert pairs.chosen_mask.tolist() == [[True, True, True, False], [True, True, True, True]]
    assert pairs.rejected_mask.tolist() == [[True, True, False, False], [True, True, False, False]]
    assert pairs.chosen_last.tolist() == [4, 5] and pairs.rejected_last.tolist() == [3, 3]
    assert labelled.score_chosen.tolist() == [2.0, 2.0] and labelled.score_rejected.tolist() == [0.0, 0.0]
    assert labelled.bayes_accuracy == pytest.approx(1 / (1 + math.exp(-40.0)))


def test_reward_model_learns_the_toy_preference():
    policy, labelled = toy_pairs()
    rm = ScalarHeadModel(policy)
    pairs = labelled.pairs
    assert pairwise_accuracy(rm, pairs) == 0.0  # a zero head scores everything 0: no strict wins yet
    train_idx, val_idx = torch.arange(0, 160), torch.arange(160, 192)
    log = train_reward_model(rm, pairs.subset(train_idx), pairs.subset(val_idx), steps=80, batch_size=32, lr=3e-3,
                             generator=make_generator(0, "cpu"), eval_every=40, progress=False)
    informative = labelled.score_chosen != labelled.score_rejected
    acc = pairwise_accuracy(rm, pairs.subset(torch.nonzero(informative).squeeze(1)))
    assert acc > 0.8, acc
    assert log.val_steps[-1] == 80


def test_dpo_starts_at_log2_and_learns_the_pairs():
    policy, labelled = toy_pairs(seed=1)
    reference = copy.deepcopy(policy)
    pairs = labelled.pairs
    chosen, rejected = pair_logps(policy, pairs)
    ref_c, ref_r = pair_logps(reference, pairs)
    torch.testing.assert_close(chosen, ref_c)
    history = train_dpo(policy, reference, pairs, pairs, DPOConfig(steps=60, batch_size=32, lr=3e-3, beta=0.5,
                                                                   eval_every=30), make_generator(0, "cpu"),
                        progress=False)
    assert history.loss[0] == pytest.approx(math.log(2), abs=1e-5)
    assert history.val_accuracy[-1] > 0.7 and history.val_margin[-1] > 0


def test_evaluate_policy_against_itself_has_zero_kl():
    policy, prompts, count3 = toy_setup()
    codec_decode = lambda ro: [str(r) for r in ro.response.tolist()]  # noqa: E731
    result = evaluate_policy(policy, copy.deepcopy(policy), prompts(16, make_generator(0, "cpu")), 0, 8, count3,
                             count3, codec_decode, seed=0)
    assert result.kl == pytest.approx(0.0, abs=1e-6)
    assert result.true_score_sem > 0  # 16 responses whose counts of token 3 differ
    seen = []
    again = evaluate_policy(policy, copy.deepcopy(policy), prompts(16, make_generator(0, "cpu")), 0, 8, count3,
                            lambda ro: seen.append(count3(ro)) or seen[-1], codec_decode, seed=0)
    scores = torch.cat(seen)  # (16,)
    assert again.true_score == pytest.approx(scores.mean().item())
    assert again.true_score_sem == pytest.approx(scores.std().item() / 4, rel=1e-6)  # sample std / sqrt(16)
    assert 1 <= result.length <= 8
    # the responses are the sampled ones (the same seed, one chunk), each cut after its end token 0 if it has one
    rollout = sample_rollout(policy, prompts(16, make_generator(0, "cpu")), 8, 0, make_generator(0, "cpu"))
    assert result.responses == [row[:n] for row, n in zip(rollout.response.tolist(), rollout.lengths.tolist())]
    lengths = [len(r) for r in result.responses]
    assert len(lengths) == 16 and all(1 <= n <= 8 for n in lengths)
    assert result.length == pytest.approx(sum(lengths) / 16)
    assert result.finished == pytest.approx(sum(r[-1] == 0 for r in result.responses) / 16)
    assert all(0 not in r[:-1] for r in result.responses)  # nothing after the end token
    assert 0 < distinct_n(result.responses, 1) <= 1


# ---------- what a real run costs ----------

def test_rlhf_memory_and_flops_by_hand():
    from course_utils.rlhf.compute import ppo_iteration_flops, rlhf_memory_bytes

    memory = rlhf_memory_bytes(1e9)
    assert memory["PPO"] == 36e9 and memory["DPO"] == memory["GRPO"] == 18e9 and memory["SFT"] == 16e9
    flops = ppo_iteration_flops(1e6, batch=2, prompt_tokens=3, response_tokens=5, epochs=4)
    tokens = 2 * 8
    assert flops["generation"] == 2e6 * tokens
    assert flops["total"] == (2 + 8 + 4 * 12) * 1e6 * tokens
    with pytest.raises(ValueError, match="epochs must be a positive number"):
        ppo_iteration_flops(1e6, 2, 3, 5, 0)
    with pytest.raises(ValueError, match="n_params"):
        rlhf_memory_bytes(-1)


def test_every_random_factory_call_in_rlhf_draws_where_its_generator_lives():
    # A CPU-only run cannot see torch.randint(..., generator=cuda_gen) without device=: it raises only on a GPU.
    import ast
    import pathlib

    import course_utils.rlhf as rlhf

    factories = {"rand", "randn", "randint", "randperm"}
    offenders = []
    for path in pathlib.Path(rlhf.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in factories
                    and any(k.arg == "generator" for k in node.keywords)):
                device = next((k.value for k in node.keywords if k.arg == "device"), None)
                if device is None or ast.unparse(device) != "generator.device":
                    offenders.append(f"{path.name}:{node.lineno}")
    assert not offenders, f"draws without device=generator.device: {offenders}"


def test_scalar_head_is_built_on_the_trunk_device():
    trunk = tiny_gpt().to("meta")  # stands in for a CUDA trunk: the head must not be left on the CPU
    assert ScalarHeadModel(trunk).head.weight.device.type == "meta"


# ---------- bad arguments found by probing the public functions ----------

def test_line_task_counts_and_end_ids_are_checked():
    codec = WordCodec(("\n", "<unk>", "a", "b", "[", "]", "."))
    ids = [2, 3, 0, 2, 2, 2, 0, 6, 2, 2, 0, 2, 4, 2, 0, 3, 3, 3, 3, 3, 3, 0, 2, 2, 2, 0]
    task = LineTask(prompt_tokens=3, max_response=5, min_line=2, max_line=4)
    for bad in (0, -1, 2.5, math.nan, True):  # 0 and -1 returned one example, NaN every one
        with pytest.raises(ValueError, match="limit must be an int >= 1"):
            line_examples(ids, codec, task, limit=bad)
    examples = line_examples(ids, codec, task, limit=np.int64(1))
    assert len(examples) == 1
    for bad in (-1, 2.5, True):  # went into the tensors as ids
        with pytest.raises(ValueError, match="eos_id must be an int >= 0"):
            sft_tensors(examples, eos_id=bad, task=task)
    for bad in (0, -1, 2.5):  # 0 returned [], -1 failed in torch.randint
        with pytest.raises(ValueError, match="n must be an int >= 1"):
            sample_prompts(examples, bad, make_generator(0, "cpu"))
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        sample_prompts(examples, 2, None)  # AttributeError: 'NoneType' object has no attribute 'device'


def test_rollout_end_ids_are_checked():
    for bad in (-1, 2.5, math.nan, True, None):  # never matched a token: every row 'unfinished'; None crashed
        with pytest.raises(ValueError, match="eos_id must be a token id"):
            response_mask(torch.tensor([[5, 0, 7]]), eos_id=bad)
    policy = tiny_gpt()
    for bad in (-1, 12, None):  # 12 is outside the policy's vocabulary of 12: it can never be sampled
        with pytest.raises(ValueError, match=r"eos_id must be a token id in \[0, 12\)"):
            sample_rollout(policy, torch.tensor([[1, 2]]), 3, bad, make_generator(0, "cpu"))
    with pytest.raises(ValueError, match=r"prompts must be a non-empty \(B, P\) tensor of ids, got list"):
        sample_rollout(policy, [[1, 2]], 3, 0, make_generator(0, "cpu"))
    mask, finished = response_mask(torch.tensor([[5, 0, 7]]), eos_id=np.int64(0))
    assert mask.tolist() == [[True, True, False]] and finished.tolist() == [True]


def test_kl_shaped_rewards_and_noisy_labels_refuse_bad_input():
    logp, mask = torch.zeros(2, 3), torch.ones(2, 3, dtype=torch.bool)
    for bad in (math.nan, math.inf, -1.0):  # NaN and inf made every reward NaN; -1 rewarded the KL
        with pytest.raises(ValueError, match="beta must be a finite number"):
            kl_shaped_rewards(torch.tensor([1.0, 2.0]), logp, logp, mask, bad)
    with pytest.raises(ValueError, match=r"scores must be \(2,\), one per response, got \(3,\)"):
        kl_shaped_rewards(torch.tensor([1.0, 2.0, 3.0]), logp, logp, mask, 0.1)  # the third score was dropped
    with pytest.raises(ValueError, match="mask must select at least one token of every response"):
        kl_shaped_rewards(torch.tensor([1.0, 2.0]), logp, logp, torch.tensor([[True] * 3, [False] * 3]), 0.1)
    a, b = torch.tensor([1.0, math.nan]), torch.zeros(2)
    with pytest.raises(ValueError, match="score_a and score_b must be finite"):
        noisy_labels(a, b, 1.0, make_generator(0, "cpu"))  # RuntimeError from torch.bernoulli: 'p_in >= 0'
    with pytest.raises(ValueError, match="explicit torch.Generator"):
        noisy_labels(b, b, 1.0, None)  # drew from the global generator
    for bad in (math.inf, True):  # inf gave coin flips, True was temperature 1
        with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
            bayes_accuracy(b, b, bad)


def test_rlhf_costs_take_numpy_numbers_and_compute_in_python_numbers():
    from course_utils.rlhf.compute import ppo_iteration_flops, rlhf_memory_bytes

    assert rlhf_memory_bytes(np.int64(10**12)) == rlhf_memory_bytes(10**12)
    assert rlhf_memory_bytes(np.float32(0.5)) == rlhf_memory_bytes(0.5)
    args = (10**12, 1024, 2048, 2048, 4)  # 2e20 training FLOPs: an int64 product would have wrapped around
    flops = ppo_iteration_flops(*(np.int64(a) for a in args))
    assert flops == ppo_iteration_flops(*args) and all(type(v) is int for v in flops.values())
    for bad in (True, np.float64(np.nan)):
        with pytest.raises(ValueError, match="batch must be a positive number"):
            ppo_iteration_flops(1e6, bad, 3, 5, 4)
