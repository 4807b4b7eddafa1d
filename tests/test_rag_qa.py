"""Answers with their probabilities: batched (left-padded) greedy answers equal answers one prompt at a time, and
their log-probabilities equal a fresh forward pass over prompt + answer; prompts have the promised shape; sampled
answers are reproducible, equal chapter 07's decoding loop without padding, and left-padded batches answer
each prompt as alone. Uses the tiny byte-level chat tokenizer and tiny random Llama of tests/test_lora_sft.py."""

import math

import pytest
import torch
import torch.nn.functional as F
from test_lora_sft import tiny_chat_tokenizer, tiny_llama

from course_utils.device import make_generator, torch_threads
from course_utils.generate.loop import generate
from course_utils.generate.sampling import SamplingConfig
from course_utils.lora.answers import left_pad
from course_utils.lora.sft import SFTConfig, chat_example, train_sft
from course_utils.rag.qa import (Answer, answer_with_probs, closed_book_message, rag_message, sample_answers,
                                 sample_answers_many, sample_padded)

USERS = ["Hi", "What is the colour of the sky on a clear day?", "Name a fruit.", "Count: one two three four five six",
         "ok?"]
TRAINED = {"Hi": "ab", "Name a fruit.": "fig", "ok?": "yes"}


@pytest.fixture(autouse=True)
def one_thread():
    with torch_threads(1):
        yield


def teach(replies: dict[str, str], steps: int = 80):
    """(tokenizer, tiny Llama) taught to give each reply to its user message (then <|im_end|>), on one thread."""
    tok, model = tiny_chat_tokenizer(), tiny_llama()
    train = [chat_example(tok, user, answer, system="") for user, answer in replies.items()]
    with torch_threads(1):
        train_sft(model, train, SFTConfig(steps=steps, batch_size=3, lr=1e-2), make_generator(0, "cpu"), pad_id=2,
                  progress=False)
    return tok, model.eval()


@pytest.fixture(scope="module")
def trained():
    """A tiny Llama taught three answers (so those stop at <|im_end|>); the other prompts run to max_new_tokens."""
    return teach(TRAINED)


def test_messages_have_the_promised_shape():
    assert closed_book_message("Who wrote Hamlet?") == "Who wrote Hamlet? Answer in a few words."
    message = rag_message("Who built it?", [("d3", "The bridge was built\n by Ana."), ("d7", "It rains.")])
    assert message == ("Passage [d3]: The bridge was built by Ana.\nPassage [d7]: It rains.\n\n"
                       "Who built it? Answer in a few words, using only the passages.")
    cited = rag_message("Who built it?", [("d3", "Ana built it.")], cite=True)
    assert cited.startswith("Passage [d3]: Ana built it.\n\nWho built it? Answer in a few words, using only the "
                            "passages. ")
    assert "in brackets" in cited and cited != rag_message("Who built it?", [("d3", "Ana built it.")])


@pytest.mark.parametrize("question, passages, error, match", [
    ("", [("a", "b")], ValueError, "question must be a non-empty str"),
    ("Q?", [], TypeError, "non-empty sequence of .passage_id, text. pairs"),
    ("Q?", "abc", TypeError, "non-empty sequence"),
    ("Q?", [("a", "b", "c")], TypeError, "each passage must be a .passage_id, text. tuple"),
    ("Q?", [("", "b")], ValueError, "a passage id must be a non-empty str"),
    ("Q?", [("a", "  ")], ValueError, "a passage text must be a non-empty str"),
])
def test_rag_message_rejects_bad_input(question, passages, error, match):
    with pytest.raises(error, match=match):
        rag_message(question, passages)
    with pytest.raises(TypeError, match="cite must be True or False"):
        rag_message("Q?", [("a", "b")], cite=1)


def test_answer_scores_by_hand():
    a = Answer("x y", (5, 6, 7), (math.log(0.5), math.log(0.25), math.log(0.8)))
    assert a.n_tokens == 3
    assert a.seq_logprob == pytest.approx(math.log(0.1))
    assert a.mean_logprob == pytest.approx(math.log(0.1) / 3)
    assert Answer("per token, not per character", (5, 6), (-1.0, -2.0)).mean_logprob == pytest.approx(-1.5)
    assert a.min_token_prob == pytest.approx(0.25) and a.first_token_prob == pytest.approx(0.5)
    assert not a.hit_token_limit and a.shown_text == "x y"
    assert Answer("x y", (5, 6, 7), a.token_logprobs, hit_token_limit=True).shown_text == "x y [cut at 3 tokens]"
    empty = Answer("", (), ())
    assert empty.n_tokens == 0 and all(math.isnan(v) for v in (empty.seq_logprob, empty.mean_logprob,
                                                                empty.min_token_prob, empty.first_token_prob))


def reference_logprobs(model, tok, user, answer_ids):
    """A fresh, unbatched forward pass over prompt + answer: log p(answer token t | prompt, answer[:t])."""
    prompt = list(chat_example(tok, user, system="").prompt_ids)
    ids = torch.tensor([prompt + list(answer_ids)])
    with torch.no_grad():
        logprobs = F.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)  # (T, V)
    return [logprobs[len(prompt) + i - 1, token].item() for i, token in enumerate(answer_ids)]


def check_batched_equals_alone_and_forward_pass(tok, model, max_new_tokens):
    batched = answer_with_probs(model, tok, USERS, max_new_tokens=max_new_tokens, batch_size=3)  # 3 + 2, padded
    alone = [answer_with_probs(model, tok, [user], max_new_tokens=max_new_tokens, batch_size=1)[0] for user in USERS]
    for user, a, b in zip(USERS, batched, alone):
        assert a.token_ids == b.token_ids and a.text == b.text
        assert 2 not in a.token_ids  # <|im_end|> is excluded
        assert a.text == tok.decode(list(a.token_ids), skip_special_tokens=True).strip()
        torch.testing.assert_close(torch.tensor(a.token_logprobs), torch.tensor(b.token_logprobs), atol=1e-4, rtol=0)
        reference = reference_logprobs(model, tok, user, a.token_ids)
        torch.testing.assert_close(torch.tensor(a.token_logprobs), torch.tensor(reference), atol=1e-4, rtol=0)
    return batched


def test_batched_answers_equal_one_at_a_time_and_a_fresh_forward_pass(trained):
    tok, model = trained
    batched = check_batched_equals_alone_and_forward_pass(tok, model, max_new_tokens=10)
    assert [batched[0].text, batched[2].text, batched[4].text] == ["ab", "fig", "yes"]  # stopped at <|im_end|>
    assert batched[2].seq_logprob > math.log(0.5)  # a taught answer is confident
    for a in (batched[0], batched[2], batched[4]):
        assert not a.hit_token_limit and a.shown_text == a.text  # a finished answer carries no note


def test_answers_that_never_stop_are_cut_at_max_new_tokens():
    tok, model = tiny_chat_tokenizer(), tiny_llama()  # untrained: never writes <|im_end|> here
    batched = check_batched_equals_alone_and_forward_pass(tok, model, max_new_tokens=7)
    assert [a.n_tokens for a in batched] == [7] * len(USERS)
    assert all(len(a.token_logprobs) == 7 and all(lp <= 0 for lp in a.token_logprobs) for a in batched)
    for a in batched:  # the cut is said where the answer is shown, and only there: matching reads the bare text
        assert a.hit_token_limit and a.shown_text == f"{a.text} [cut at 7 tokens]"
        assert "cut at" not in a.text and a.text == tok.decode(list(a.token_ids), skip_special_tokens=True).strip()


def test_an_answer_that_ends_exactly_at_the_limit_is_not_cut(trained):
    tok, model = trained
    full = answer_with_probs(model, tok, ["Name a fruit."], max_new_tokens=10)[0]  # "fig" then <|im_end|>
    assert full.text == "fig" and not full.hit_token_limit
    exact = answer_with_probs(model, tok, ["Name a fruit."], max_new_tokens=full.n_tokens + 1)[0]  # room for the end
    shorter = answer_with_probs(model, tok, ["Name a fruit."], max_new_tokens=full.n_tokens)[0]    # no room for it
    assert exact == full
    assert shorter.token_ids == full.token_ids and shorter.hit_token_limit
    assert shorter.shown_text == f"fig [cut at {full.n_tokens} tokens]"


def test_answer_with_probs_uses_the_system_message(trained):
    tok, model = trained
    plain = answer_with_probs(model, tok, ["Hi"], max_new_tokens=4)[0]
    other = answer_with_probs(model, tok, ["Hi"], max_new_tokens=4, system="Be brief.")[0]
    assert plain.token_logprobs != other.token_logprobs  # a different prompt, a different distribution


def test_answer_with_probs_rejects_bad_input(trained):
    tok, model = trained
    with pytest.raises(TypeError, match="messages must be a non-empty sequence of strings"):
        answer_with_probs(model, tok, "Hi")
    with pytest.raises(ValueError, match="every message must be a non-empty str"):
        answer_with_probs(model, tok, ["Hi", ""])
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        answer_with_probs(model, tok, ["Hi"], batch_size=0)
    with pytest.raises(ValueError, match="max_new_tokens must be a positive int"):
        answer_with_probs(model, tok, ["Hi"], max_new_tokens=1.5)
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        answer_with_probs("model", tok, ["Hi"])


def test_sampled_answers_are_reproducible_and_vary(trained):
    tok, model = trained
    first = sample_answers(model, tok, USERS[1], n=6, temperature=1.5, generator=make_generator(0, "cpu"),
                           max_new_tokens=6)
    again = sample_answers(model, tok, USERS[1], n=6, temperature=1.5, generator=make_generator(0, "cpu"),
                           max_new_tokens=6)
    other = sample_answers(model, tok, USERS[1], n=6, temperature=1.5, generator=make_generator(1, "cpu"),
                           max_new_tokens=6)
    assert len(first) == 6 and first == again and first != other
    assert len(set(first)) > 1  # the rows of one call are different draws
    cold = sample_answers(model, tok, "Name a fruit.", n=4, temperature=0.05, generator=make_generator(0, "cpu"))
    assert cold == ["fig"] * 4  # near-greedy sampling of a taught answer, cut at <|im_end|>
    nucleus = sample_answers(model, tok, "Name a fruit.", n=3, temperature=3.0, top_p=0.01,
                             generator=make_generator(0, "cpu"))
    assert nucleus == ["fig"] * 3  # top_p keeps only the most probable token


def test_one_message_samples_equal_our_decoding_loop(trained):
    """Without padding, sample_padded is generate() of chapter 07's loop: the same seed draws the same tokens."""
    tok, model = trained
    prompt = chat_example(tok, USERS[1], system="").prompt_ids
    ids = torch.tensor([prompt] * 5)  # (5, T)
    reference = generate(model, ids, 6, SamplingConfig(temperature=1.5), make_generator(3, "cpu"), eos_token_id=2,
                         pad_token_id=2).new_ids  # (5, <= 6)
    ours = sample_padded(model, ids, torch.ones_like(ids), SamplingConfig(temperature=1.5), make_generator(3, "cpu"),
                         6, stop_id=2)
    assert torch.equal(ours, reference)
    hot = generate(model, ids, 24, SamplingConfig(temperature=3.0), make_generator(4, "cpu"), eos_token_id=2,
                   pad_token_id=2).new_ids  # many flat draws: a small error in the logits changes some of them
    assert torch.equal(sample_padded(model, ids, torch.ones_like(ids), SamplingConfig(temperature=3.0),
                                     make_generator(4, "cpu"), 24, stop_id=2), hot)


def test_padded_batches_answer_each_prompt_as_alone(trained):
    """Prompts of different lengths, left-padded in one batch: greedy decoding gives each prompt's own answer."""
    tok, model = trained
    users = [USERS[0], "Name a fruit.", USERS[1] + " " + USERS[1]]
    prompts = [chat_example(tok, u, system="").prompt_ids for u in users]
    assert len({len(p) for p in prompts}) == 3
    input_ids, attention_mask = left_pad(prompts, 2)
    new = sample_padded(model, input_ids, attention_mask, SamplingConfig(greedy=True), None, 6, stop_id=2)
    alone = answer_with_probs(model, tok, users, max_new_tokens=6, batch_size=1)
    for row, answer in zip(new.tolist(), alone):
        assert tuple(row[:answer.n_tokens]) == answer.token_ids


def test_a_finished_row_keeps_receiving_the_stop_token(trained):
    tok, model = trained
    input_ids, attention_mask = left_pad([chat_example(tok, u, system="").prompt_ids for u in USERS], 2)
    new = sample_padded(model, input_ids, attention_mask, SamplingConfig(greedy=True), None, 10, stop_id=2).tolist()
    ends = [row.index(2) for row in new]  # "ab" ends a step before the others ("fig", "yes" and two untaught rows)
    assert min(ends) < max(ends) == len(new[0]) - 1  # decoding stopped once every row had finished
    assert all(row[end:] == [2] * (len(row) - end) for row, end in zip(new, ends))


def test_the_attention_mask_grows_by_a_column_of_ones_per_step(trained):
    tok, model = trained

    class MaskSpy(torch.nn.Module):  # the model, recording the attention mask of every call
        def __init__(self):
            super().__init__()
            self.model, self.config, self.masks = model, model.config, []

        def forward(self, **kwargs):
            self.masks.append(kwargs["attention_mask"].clone())
            return self.model(**kwargs)

    spy = MaskSpy()
    input_ids, attention_mask = left_pad([chat_example(tok, u, system="").prompt_ids for u in USERS[:3]], 2)
    sample_padded(spy, input_ids, attention_mask, SamplingConfig(greedy=True), None, 4, stop_id=10_000)
    assert len(spy.masks) == 4  # the prefill and one call per new token but the last
    for step, mask in enumerate(spy.masks):
        assert torch.equal(mask, torch.cat([attention_mask, torch.ones(3, step, dtype=torch.long)], dim=1))


def test_answers_restore_the_training_mode():
    tok, model = tiny_chat_tokenizer(), tiny_llama()
    for training in (True, False):
        model.train(training)
        answer_with_probs(model, tok, ["Hi"], max_new_tokens=2)
        assert model.training == training
        sample_answers(model, tok, "Hi", n=2, generator=make_generator(0, "cpu"), max_new_tokens=2, top_p=1.0)
        assert model.training == training


def test_many_messages_are_sampled_together(trained):
    tok, model = trained
    users = ["Name a fruit.", USERS[1], USERS[0]]
    many = sample_answers_many(model, tok, users, n=3, temperature=0.05, generator=make_generator(0, "cpu"),
                               max_new_tokens=6, batch_size=4)   # batches cut across messages
    greedy = answer_with_probs(model, tok, users, max_new_tokens=6)
    assert [len(s) for s in many] == [3, 3, 3]
    assert many[0] == ["fig"] * 3 and all(s == [g.text] * 3 for s, g in zip(many, greedy))
    again = sample_answers_many(model, tok, users, n=3, temperature=1.5, generator=make_generator(1, "cpu"),
                                max_new_tokens=6, batch_size=4)
    assert again == sample_answers_many(model, tok, users, n=3, temperature=1.5, generator=make_generator(1, "cpu"),
                                        max_new_tokens=6, batch_size=4)
    with pytest.raises(TypeError, match="messages must be a non-empty sequence"):
        sample_answers_many(model, tok, "Hi", n=2, generator=make_generator(0, "cpu"))


def test_a_progress_bar_changes_no_sample(trained, capsys):
    tok, model = trained
    users = ["Name a fruit.", USERS[1], USERS[0]]
    draw = lambda progress: sample_answers_many(model, tok, users, n=3, temperature=1.5, max_new_tokens=6,
                                                generator=make_generator(1, "cpu"), batch_size=4, progress=progress)
    quiet = draw(False)
    assert capsys.readouterr().err == ""
    assert draw(True) == quiet and "samples" in capsys.readouterr().err   # tqdm writes its bar to stderr


class _TrailingSentence:
    """The test tokenizer, but every decoded text gains a second sentence (as multi-character tokens can give)."""

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)

    def __call__(self, *args, **kwargs):
        return self._tokenizer(*args, **kwargs)

    def decode(self, *args, **kwargs):
        return self._tokenizer.decode(*args, **kwargs).rstrip(".") + ". Then more."


def test_one_sentence_answers_keep_only_the_first_sentence(trained):
    tok, model = trained
    tok2, users = _TrailingSentence(tok), ["Name a fruit.", USERS[1]]
    kwargs = dict(n=2, temperature=0.05, max_new_tokens=6, batch_size=4)
    whole = sample_answers_many(model, tok2, users, generator=make_generator(0, "cpu"), **kwargs)
    cut = sample_answers_many(model, tok2, users, generator=make_generator(0, "cpu"), one_sentence=True, **kwargs)
    assert all(a.endswith("Then more.") for answers in whole for a in answers)  # the proxy shows itself
    assert cut[0] == ["fig."] * 2 and all("Then" not in a for answers in cut for a in answers)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"temperature": 0}, ValueError, "temperature must be a finite number > 0"),
    ({"temperature": -1.0}, ValueError, "temperature must be a finite number > 0"),
    ({"temperature": float("inf")}, ValueError, "temperature must be a finite number > 0"),
    ({"top_p": 0.0}, ValueError, r"top_p must be in \(0, 1\] or None"),
    ({"top_p": 1.5}, ValueError, r"top_p must be in \(0, 1\] or None"),
    ({"n": 0}, ValueError, "n must be a positive int"),
    ({"generator": None}, TypeError, "generator must be a torch.Generator"),
])
def test_sample_answers_rejects_bad_input(trained, kwargs, error, match):
    tok, model = trained
    args = {"n": 2, "temperature": 1.0, "generator": make_generator(0, "cpu")} | kwargs
    with pytest.raises(error, match=match):
        sample_answers(model, tok, "Hi", **args)


@pytest.mark.parametrize("message", ["", "   ", None, ["Hi"]])
def test_sample_answers_refuses_a_message_that_is_not_a_non_empty_str(trained, message):
    tok, model = trained
    with pytest.raises(TypeError if not isinstance(message, str) else ValueError,
                       match="message must be a non-empty str"):
        sample_answers(model, tok, message, n=2, generator=make_generator(0, "cpu"))


def test_sample_answers_checks_the_generator_device():
    """A model on another device than the generator (meta here, cuda on Colab) is refused before any draw."""
    tok, model = tiny_chat_tokenizer(), tiny_llama().to("meta")
    with pytest.raises(ValueError, match=r"generator is on cpu but `the model's parameters` is on meta"):
        sample_answers(model, tok, "Hi", n=2, generator=make_generator(0, "cpu"))



def test_numpy_counts_and_knobs_give_the_same_answers(trained):
    import numpy as np

    tok, model = trained
    users = ["Name a fruit.", USERS[1]]
    assert answer_with_probs(model, tok, users, max_new_tokens=np.int64(5), batch_size=np.int64(1)) == \
        answer_with_probs(model, tok, users, max_new_tokens=5, batch_size=1)
    ours = sample_answers_many(model, tok, users, n=np.int64(3), temperature=np.float32(1.5), top_p=np.float32(0.5),
                               generator=make_generator(1, "cpu"), max_new_tokens=np.int64(6), batch_size=np.int32(4))
    assert ours == sample_answers_many(model, tok, users, n=3, temperature=1.5, top_p=0.5,
                                       generator=make_generator(1, "cpu"), max_new_tokens=6, batch_size=4)
    for kwargs in ({"n": True}, {"temperature": np.float32(np.inf)}, {"top_p": np.float64(1.5)}):
        with pytest.raises(ValueError, match="must be"):
            sample_answers_many(model, tok, users, **{"n": 2, **kwargs}, generator=make_generator(0, "cpu"))
