"""Label scoring: the shared-cache scores equal a plain full forward pass per prompt + label (float32, tight
tolerance) on a tiny random Llama and on real SmolLM2; the prompt/label tokenization boundary is checked; bad
labels raise. Uses the tiny byte-level chat tokenizer and tiny random Llama of tests/test_lora_sft.py."""

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from test_lora_sft import tiny_chat_tokenizer, tiny_llama

from course_utils.device import torch_threads
from course_utils.classify.scoring import (encode_prefix, label_logprobs, label_logprobs_after_prefix,
                                           label_logprobs_many, label_logprobs_per_label, label_probabilities)

PROMPTS = ["Passage: To be, or not to be.\nGenre:", "Hi\nGenre:", "A longer passage, with several words in it.\nGenre:"]
LABELS = [" comedy", " history play", " tragedy", " x"]  # different lengths: the label cache path is exercised


@pytest.fixture(autouse=True)
def one_thread():
    with torch_threads(1):
        yield


def reference(model, tokenizer, prompt, label):
    """The plainest possible score: full logits over prompt + label, summed log-probabilities of the label tokens."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    label_ids = tokenizer(label, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt_ids + label_ids])).logits[0].float()  # (T, V)
    logprobs = F.log_softmax(logits, dim=-1)
    return sum(logprobs[len(prompt_ids) + i - 1, t].item() for i, t in enumerate(label_ids))


def reference_matrix(model, tokenizer, prompts, labels):
    return torch.tensor([[reference(model, tokenizer, p, l) for l in labels] for p in prompts])


def test_shared_cache_matches_a_forward_pass_per_label_on_a_tiny_llama():
    tok, model = tiny_chat_tokenizer(), tiny_llama()
    expected = reference_matrix(model, tok, PROMPTS, LABELS)
    for batch_size in (1, 2, 3):
        torch.testing.assert_close(label_logprobs_many(model, tok, PROMPTS, LABELS, batch_size=batch_size,
                                                       progress=False), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(label_logprobs(model, tok, PROMPTS[1], LABELS), expected[1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(label_logprobs_per_label(model, tok, PROMPTS[2], LABELS), expected[2], atol=1e-5,
                               rtol=1e-5)


def test_one_token_labels_and_a_single_label():
    tok, model = tiny_chat_tokenizer(), tiny_llama()
    scores = label_logprobs(model, tok, PROMPTS[0], [" ", "a", "b"])  # one byte each: the first-token path
    torch.testing.assert_close(scores, reference_matrix(model, tok, PROMPTS[:1], [" ", "a", "b"])[0])
    assert label_logprobs(model, tok, PROMPTS[0], ["abc"]).shape == (1,)


def test_a_shared_prefix_gives_the_scores_of_the_whole_prompts():
    tok, model = tiny_chat_tokenizer(), tiny_llama()
    prefix = "Passage: To be.\nGenre: b\n\nPassage: Hi there.\nGenre: a"  # two shots
    suffixes = ["\n\nPassage: x\nGenre:", "\n\nPassage: a much longer passage than the first\nGenre:", "\n\nP:"]
    labels = [" ", "a", "b"]  # one byte token each
    expected = reference_matrix(model, tok, [prefix + s for s in suffixes], labels)
    for batch_size in (1, 2, 3):  # rows of different lengths share a batch: the right padding is exercised
        torch.testing.assert_close(label_logprobs_after_prefix(model, tok, prefix, suffixes, labels,
                                                               batch_size=batch_size), expected, atol=1e-5, rtol=1e-5)
    calls = []
    hook = model.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        encoded = encode_prefix(model, tok, prefix)   # the prefix run once, reused by two calls
        first, second = (label_logprobs_after_prefix(model, tok, encoded, part, labels)
                         for part in (suffixes[:2], suffixes[2:]))
        assert len(calls) == 3   # the prefix once, then one batch of suffixes per call: the prefix not run again
        label_logprobs_after_prefix(model, tok, prefix, suffixes[:2], labels)
        assert len(calls) == 5   # from text: the prefix, then its batch
    finally:
        hook.remove()
    torch.testing.assert_close(torch.cat([first, second]), expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="another model"):
        label_logprobs_after_prefix(tiny_llama(), tok, encoded, suffixes, labels)
    with pytest.raises(ValueError, match="token ids differ"):
        label_logprobs_after_prefix(model, tok, replace(encoded, ids=encoded.ids[:-1]), suffixes, labels)
    with pytest.raises(ValueError, match="one-token labels"):
        label_logprobs_after_prefix(model, tok, prefix, suffixes, [" a", "b"])
    with pytest.raises(ValueError, match="batch_size"):
        label_logprobs_after_prefix(model, tok, prefix, suffixes, labels, batch_size=0)
    with pytest.raises(ValueError, match="non-empty"):
        label_logprobs_after_prefix(model, tok, prefix, [""], labels)


def test_scores_are_log_probabilities_of_the_whole_label():
    tok, model = tiny_chat_tokenizer(), tiny_llama()
    labels = [chr(c) for c in range(32, 127)]  # printable ASCII: one byte token each
    ids = [tok(l, add_special_tokens=False)["input_ids"] for l in labels]
    assert all(len(i) == 1 for i in ids)
    scores = label_logprobs(model, tok, "Hello", labels)
    with torch.no_grad():
        next_token = torch.softmax(model(input_ids=torch.tensor([tok("Hello")["input_ids"]])).logits[0, -1], -1)
    torch.testing.assert_close(scores.exp().sum(), next_token[[i[0] for i in ids]].sum())
    assert scores.exp().sum() < 1.0  # the other 161 tokens hold the rest of the mass
    probs = label_probabilities(scores)
    torch.testing.assert_close(probs.sum(), torch.tensor(1.0))
    torch.testing.assert_close(probs.log() - scores, (probs.log() - scores)[:1].expand(len(labels)))  # a shift


def test_model_mode_is_restored():
    tok, model = tiny_chat_tokenizer(), tiny_llama()
    model.train()
    label_logprobs(model, tok, PROMPTS[0], LABELS)
    label_logprobs_per_label(model, tok, PROMPTS[0], LABELS)
    assert model.training


class DroppingTokenizer:
    """Wraps a tokenizer and turns one string into no tokens (as a tokenizer that drops unknown characters would)."""

    def __init__(self, inner, dropped):
        self.inner, self.dropped = inner, dropped

    def __call__(self, text, **kwargs):
        return {"input_ids": []} if text == self.dropped else self.inner(text, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_bad_labels_and_prompts_raise_clear_errors():
    tok, model = tiny_chat_tokenizer(), tiny_llama()
    with pytest.raises(ValueError, match="empty"):
        label_logprobs(model, tok, PROMPTS[0], [])
    with pytest.raises(ValueError, match="distinct"):
        label_logprobs(model, tok, PROMPTS[0], [" a", " a"])
    with pytest.raises(ValueError, match="no tokens"):
        label_logprobs(model, tok, PROMPTS[0], [" a", ""])
    with pytest.raises(ValueError, match="no tokens"):
        label_logprobs(model, DroppingTokenizer(tok, "\u2205"), PROMPTS[0], [" a", "\u2205"])
    with pytest.raises(TypeError, match="list of strings"):
        label_logprobs(model, tok, PROMPTS[0], " comedy")
    with pytest.raises(ValueError, match="prompts is empty"):
        label_logprobs_many(model, tok, [], LABELS)
    with pytest.raises(ValueError, match="non-empty"):
        label_logprobs_many(model, tok, ["ok", ""], LABELS)
    with pytest.raises(ValueError, match="batch_size"):
        label_logprobs_many(model, tok, PROMPTS, LABELS, batch_size=0)
    with pytest.raises(TypeError, match="many prompts"):
        label_logprobs(model, tok, PROMPTS, LABELS)
    with pytest.raises(TypeError, match="nn.Module"):
        label_logprobs("model", tok, PROMPTS[0], LABELS)


@pytest.fixture(scope="module")
def smollm2():
    from course_utils.cache import is_complete_dir
    from course_utils.model.pretrained import load_smollm2, smollm2_cache_path

    if not is_complete_dir(smollm2_cache_path()):
        pytest.skip("the SmolLM2 cache is not built (load_smollm2() builds it)")
    with torch_threads(2):
        loaded = load_smollm2("cpu", verbose=False)
    return loaded.model, loaded.tokenizer


def test_boundary_convention_on_the_smollm2_tokenizer(smollm2):
    _, tok = smollm2
    from course_utils.classify.scoring import check_labels, encode_prompt

    labels = [" comedy", " history", " tragedy"]
    ids = check_labels(tok, labels)
    assert len(encode_prompt(tok, "Passage: O Romeo.\nGenre:", labels, ids)) > 3
    with pytest.raises(ValueError, match="trailing space"):  # "Genre: " + "comedy" tokenizes as "Genre:" + " comedy"
        encode_prompt(tok, "Passage: O Romeo.\nGenre: ", ["comedy"], check_labels(tok, ["comedy"]))


@pytest.mark.slow  # 3 to 18 s on the shared 2-core box: 12 forward passes of a 135M model
def test_shared_cache_matches_a_forward_pass_per_label_on_smollm2(smollm2):
    model, tok = smollm2
    prompts = ["Passage: But soft, what light through yonder window breaks?\nGenre:",
               "Passage: Once more unto the breach, dear friends.\nIs this play a comedy, a history or a tragedy? "
               "Answer:",
               tok.apply_chat_template([{"role": "user", "content": "Comedy, history or tragedy? 'To be or not to "
                                         "be.'"}], tokenize=False, add_generation_prompt=True)]
    raw_labels, chat_labels = [" comedy", " history play", " tragedy"], ["comedy", "history play", "tragedy"]
    with torch_threads(2):
        raw = label_logprobs_many(model, tok, prompts[:2], raw_labels, batch_size=2, progress=False)
        chat = label_logprobs(model, tok, prompts[2], chat_labels)
        expected_raw = reference_matrix(model, tok, prompts[:2], raw_labels)
        expected_chat = reference_matrix(model, tok, prompts[2:], chat_labels)[0]
        per_label = label_logprobs_per_label(model, tok, prompts[0], raw_labels)
    torch.testing.assert_close(raw, expected_raw, atol=2e-4, rtol=1e-5)
    torch.testing.assert_close(chat, expected_chat, atol=2e-4, rtol=1e-5)
    torch.testing.assert_close(per_label, expected_raw[0], atol=2e-4, rtol=1e-5)
    prefix = "Passage: O Romeo, Romeo.\nGenre: tragedy"
    with torch_threads(2):
        after = label_logprobs_after_prefix(model, tok, prefix, ["\n\nPassage: Once more unto the breach.\nGenre:"],
                                            [" comedy", " history", " tragedy"])
        whole = reference_matrix(model, tok, [prefix + "\n\nPassage: Once more unto the breach.\nGenre:"],
                                 [" comedy", " history", " tragedy"])
    torch.testing.assert_close(after, whole, atol=2e-4, rtol=1e-5)
    with pytest.raises(ValueError, match="does not tokenize"):  # "\n\n" then "Passage" merges across the cut
        label_logprobs_after_prefix(model, tok, prefix + "\n\n", ["Passage: x\nGenre:"], [" comedy", " history"])


def test_numpy_batch_sizes_give_the_same_scores():
    import numpy as np

    tok, model = tiny_chat_tokenizer(), tiny_llama()
    assert torch.equal(label_logprobs_many(model, tok, PROMPTS, LABELS, batch_size=np.int64(2), progress=False),
                       label_logprobs_many(model, tok, PROMPTS, LABELS, batch_size=2, progress=False))
    prefix, suffixes, labels = "Passage: To be.\nGenre: b", ["\n\nPassage: x\nGenre:", "\n\nP:"], [" ", "a", "b"]
    assert torch.equal(label_logprobs_after_prefix(model, tok, prefix, suffixes, labels, batch_size=np.int32(2)),
                       label_logprobs_after_prefix(model, tok, prefix, suffixes, labels, batch_size=2))
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        label_logprobs_many(model, tok, PROMPTS, LABELS, batch_size=np.float64(2.0))
