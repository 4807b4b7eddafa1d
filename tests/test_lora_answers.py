"""Answers and label scores: batched (left-padded) greedy decoding equals decoding each prompt alone, token for
token; label log-probabilities equal a plain forward pass per label; a tiny model trained to answer stops at
<|im_end|>. Uses the tiny byte-level chat tokenizer and tiny random Llama of tests/test_lora_sft.py."""

import pytest
import torch
import torch.nn.functional as F
from test_lora_sft import tiny_chat_tokenizer, tiny_llama

from course_utils.device import make_generator, torch_threads
from course_utils.lora.answers import generate_answers, label_logprobs, label_token_ids, left_pad, pad_token_id
from course_utils.lora.sft import SFTConfig, SFTExample, chat_example, train_sft

USERS = ["Hi", "What is the colour of the sky on a clear day?", "Name a fruit.", "Count: one two three four five six",
         "ok?"]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: more threads only add contention on a shared machine."""
    with torch_threads(1):
        yield


def prompts(tokenizer, users=USERS):
    return [chat_example(tokenizer, user) for user in users]


def test_left_pad_right_aligns_prompts():
    ids, mask = left_pad([(5, 6, 7), (8,)], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_pad_token_id_prefers_the_tokenizers_pad_token():
    tok = tiny_chat_tokenizer()
    assert pad_token_id(tok) == 2  # the tiny tokenizer pads with <|im_end|>
    tok.pad_token = "<|endoftext|>"
    assert pad_token_id(tok) == 0
    tok.pad_token = None
    assert pad_token_id(tok) == 2  # no pad token: fall back to <|im_end|>


def test_batched_greedy_decoding_equals_unbatched_token_for_token():
    tok, model = tiny_chat_tokenizer(), tiny_llama()
    examples = prompts(tok)
    assert len({len(e.prompt_ids) for e in examples}) == len(examples)  # all lengths differ: real padding
    ids, mask = left_pad([e.prompt_ids for e in examples], pad_id=2)
    with torch.no_grad():
        batched = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=8, do_sample=False,
                                 pad_token_id=2, eos_token_id=10_000)  # an id never produced: no early stop
        for row, e in enumerate(examples):
            alone = model.generate(input_ids=torch.tensor([e.prompt_ids]), max_new_tokens=8, do_sample=False,
                                   pad_token_id=2, eos_token_id=10_000)
            assert batched[row, ids.shape[1]:].tolist() == alone[0, len(e.prompt_ids):].tolist()
    one_by_one = generate_answers(model, tok, examples, max_new_tokens=8, batch_size=1)
    assert generate_answers(model, tok, examples, max_new_tokens=8, batch_size=3) == one_by_one
    assert all(isinstance(a, str) and a == a.strip() and "<|im_end|>" not in a for a in one_by_one)


def test_answers_hold_only_new_tokens_for_a_prompt_without_a_final_newline():
    tok, model = tiny_chat_tokenizer(), tiny_llama()
    prompt = tuple(tok("Name a fruit", add_special_tokens=False)["input_ids"])  # ends in "t", not in "\n"
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(5):  # greedy decoding by hand, stopping at <|im_end|> (id 2)
            ids.append(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax().item())
            if ids[-1] == 2:
                ids.pop()
                break
    expected = tok.decode(ids[len(prompt):]).strip()
    assert generate_answers(model, tok, [SFTExample(prompt, ())], max_new_tokens=5) == [expected]


def test_answers_stop_at_the_end_token_after_sft():
    tok, model = tiny_chat_tokenizer(), tiny_llama()
    targets = {"Hi": "ab", "Name a fruit.": "fig", "ok?": "yes", "Count: one two three four five six": "seven"}
    train = [chat_example(tok, user, answer) for user, answer in targets.items()]
    train_sft(model, train, SFTConfig(steps=80, batch_size=4, lr=1e-2), make_generator(0, "cpu"), pad_id=2,
              progress=False)
    examples = prompts(tok, list(targets))
    assert generate_answers(model, tok, examples, max_new_tokens=12, batch_size=4) == list(targets.values())
    scores = label_logprobs(model, tok, examples, list(targets.values()))
    assert scores.argmax(1).tolist() == [0, 1, 2, 3]  # the trained answer is the most probable label


def reference_label_logprob(model, prompt_ids, label_ids):
    ids = torch.tensor([list(prompt_ids) + list(label_ids)])
    with torch.no_grad():
        logprobs = F.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)  # (T, V)
    start = len(prompt_ids)
    return sum(logprobs[start + i - 1, token].item() for i, token in enumerate(label_ids))


def test_label_logprobs_equal_a_plain_forward_pass_per_label():
    tok, model = tiny_chat_tokenizer(), tiny_llama()
    examples, labels = prompts(tok), ["joy", "sadness", "anger", "fear", "x"]  # labels of 1 to 7 tokens
    scores = label_logprobs(model, tok, examples, labels, batch_size=2)  # batches of 2, 2 and 1 prompts
    assert scores.shape == (len(examples), len(labels)) and scores.dtype == torch.float32
    label_ids = label_token_ids(tok, labels)
    assert [len(ids) for ids in label_ids] == [3, 7, 5, 4, 1]
    for n, e in enumerate(examples):
        for k, ids in enumerate(label_ids):
            assert scores[n, k].item() == pytest.approx(reference_label_logprob(model, e.prompt_ids, ids), abs=1e-4)
    torch.testing.assert_close(label_logprobs(model, tok, examples, labels, batch_size=1), scores)
    torch.testing.assert_close(label_logprobs(model, tok, examples, labels, batch_size=2, progress=True), scores)
    assert (scores < 0).all()


def test_evaluation_restores_the_training_mode():
    tok, model = tiny_chat_tokenizer(), tiny_llama()
    model.train()
    generate_answers(model, tok, prompts(tok)[:2], max_new_tokens=2)
    label_logprobs(model, tok, prompts(tok)[:2], ["a", "b"])
    assert model.training
    model.eval()
    generate_answers(model, tok, prompts(tok)[:2], max_new_tokens=2)
    assert not model.training
    label_logprobs(model, tok, prompts(tok)[:2], ["a", "b"])
    assert not model.training


def test_answers_reject_bad_arguments():
    tok, model = tiny_chat_tokenizer(), tiny_llama()
    examples = prompts(tok)[:2]
    with pytest.raises(TypeError, match="SFTExample"):
        generate_answers(model, tok, ["Hi"])
    with pytest.raises(ValueError, match="prompt token"):
        label_logprobs(model, tok, examples + [SFTExample((), ())], ["a"])
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate_answers(model, tok, examples, max_new_tokens=0)
    with pytest.raises(ValueError, match="batch_size"):
        label_logprobs(model, tok, examples, ["a"], batch_size=0)
    with pytest.raises(TypeError, match="labels"):
        label_logprobs(model, tok, examples, "joy")
    with pytest.raises(ValueError, match="distinct"):
        label_logprobs(model, tok, examples, ["a", "a"])


def test_numpy_ints_give_the_same_answers_and_scores():
    import numpy as np

    tok, model = tiny_chat_tokenizer(), tiny_llama()
    examples, labels = prompts(tok), ["joy", "x"]
    assert generate_answers(model, tok, examples, max_new_tokens=np.int64(4), batch_size=np.int64(2)) == \
        generate_answers(model, tok, examples, max_new_tokens=4, batch_size=2)
    assert torch.equal(label_logprobs(model, tok, examples, labels, batch_size=np.int32(2)),
                       label_logprobs(model, tok, examples, labels, batch_size=2))
    for kwargs in ({"batch_size": True}, {"max_new_tokens": np.float64(4.0)}):
        with pytest.raises(ValueError, match="must be a positive int"):
            generate_answers(model, tok, examples, **kwargs)
