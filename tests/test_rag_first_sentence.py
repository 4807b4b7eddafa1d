"""The first-sentence rule of chapter 08's answers: where a sentence ends in a text (initials, abbreviations, a mark
not yet confirmed, line breaks), how many tokens hold it, and answers generated with ``one_sentence=True``: the first
sentence of the unrestricted answer, token for token, with its log-probabilities, stopped early, and cut only when no
sentence ended within the limit. A tiny Llama is taught two-sentence replies (tests/test_lora_sft.py's tokenizer)."""

import pytest
import torch
from test_lora_sft import tiny_chat_tokenizer
from test_rag_qa import teach

from course_utils.device import make_generator, torch_threads
from course_utils.generate.sampling import SamplingConfig
from course_utils.lora.sft import chat_example
from course_utils.rag.first_sentence import first_sentence, first_sentence_end, first_sentence_tokens, sentence_stop
from course_utils.rag.qa import answer_with_probs, sample_answers_many, sample_padded

TAUGHT = {"Who built it?": "Ana Rell. She was a mason.", "Where?": "in Rome\nthen Ostia", "Year?": "1846."}


@pytest.mark.parametrize("text, first", [
    ("Paris. It is the capital.", "Paris."),
    ("She was born in 1846 in Iveldale. Iveldale was founded in 1165.", "She was born in 1846 in Iveldale."),
    ("Is it Rome? Yes.", "Is it Rome?"),
    ("Rome! Surely", "Rome!"),
    ("in Rome\nthen Ostia", "in Rome"),
    ("\n\nParis\nmore", "Paris"),                                   # a leading line break is not an end
    ("John A. Cocke, a British physicist. He", "John A. Cocke, a British physicist."),  # an initial
    ("Dr. Vey and Mr. Ode of St. Ives. Then", "Dr. Vey and Mr. Ode of St. Ives."),       # abbreviations
    ("about 1.5 metres. Then", "about 1.5 metres."),                # a decimal point has no space after it
    ("Paris.", "Paris."),                                          # the final mark is not confirmed yet: no end
    ("a lord named Quotha", "a lord named Quotha"),
    ("It is room 5. Then", "It is room 5."),                        # a digit is not an initial
    ("Is it plan B? Yes.", "Is it plan B?"),                        # only a "." can follow an initial
    (" \nParis\nmore", "Paris"),                                  # white space, then a line break: not an end
])
def test_first_sentence_of_texts(text, first):
    assert first_sentence(text) == first
    end = first_sentence_end(text)
    assert (end is None) == (first == text.strip())
    if end is not None:
        assert text[:end].strip() == first


def test_a_line_break_ends_the_sentence_before_it():
    assert first_sentence_end("in Rome\nthen Ostia") == len("in Rome")  # the line break is not part of it
    assert first_sentence_end("Rome. Then") == len("Rome.")  # a mark is


def test_first_sentence_rejects_non_text():
    with pytest.raises(TypeError, match="text must be a str"):
        first_sentence_end(b"Paris. It")


def test_first_sentence_tokens_with_a_byte_level_tokenizer():
    tok = tiny_chat_tokenizer()
    ids = tok("Ana Rell. She was", add_special_tokens=False)["input_ids"]   # one token per byte
    assert first_sentence_tokens(tok, ids) == len("Ana Rell.")
    assert first_sentence_tokens(tok, ids[:len("Ana Rell.")]) is None           # the mark is not confirmed yet
    assert first_sentence_tokens(tok, ids + [2]) == len("Ana Rell.")           # special tokens are skipped
    stop = sentence_stop(tok, prompt_length=2)
    rows = torch.tensor([[0, 0] + ids, [0, 0] + ids[:9] + [2] * (len(ids) - 9)])  # (2, T): ended, and not yet
    assert stop(rows, None).tolist() == [True, False]


@pytest.fixture(scope="module")
def taught():
    """A tiny Llama taught replies of two sentences, two lines and one sentence."""
    return teach(TAUGHT, steps=120)


def test_one_sentence_answers_are_the_first_sentence_of_the_full_answer(taught):
    tok, model = taught
    users = list(TAUGHT)
    with torch_threads(1):
        full = answer_with_probs(model, tok, users, max_new_tokens=40, batch_size=2)
        short = answer_with_probs(model, tok, users, max_new_tokens=40, batch_size=2, one_sentence=True)
    assert [a.text for a in full] == list(TAUGHT.values())  # the replies were learned, so the test means something
    assert [a.text for a in short] == ["Ana Rell.", "in Rome", "1846."]
    for f, s in zip(full, short):
        assert f.token_ids[:s.n_tokens] == s.token_ids and s.token_logprobs == f.token_logprobs[:s.n_tokens]
        assert not s.hit_token_limit and s.text == tok.decode(list(s.token_ids)).strip()
        assert s.continued == (s.text != f.text) and not f.continued  # the reply went on: the rest was dropped


def test_one_sentence_is_cut_only_when_no_sentence_ended_within_the_limit(taught):
    tok, model = taught
    with torch_threads(1):
        exact = answer_with_probs(model, tok, ["Who built it?"], max_new_tokens=len("Ana Rell. "), one_sentence=True)
        early = answer_with_probs(model, tok, ["Who built it?"], max_new_tokens=len("Ana Rell."), one_sentence=True)
    assert exact[0].text == "Ana Rell." and not exact[0].hit_token_limit  # the space after the mark confirms it
    assert early[0].text == "Ana Rell." and early[0].hit_token_limit      # not confirmed: reported as cut


def test_sampled_answers_keep_their_first_sentence(taught):
    tok, model = taught
    with torch_threads(1):
        cold = sample_answers_many(model, tok, list(TAUGHT), n=2, temperature=0.05, generator=make_generator(0, "cpu"),
                                   max_new_tokens=40, batch_size=4, one_sentence=True)
    assert cold == [["Ana Rell."] * 2, ["in Rome"] * 2, ["1846."] * 2]


def test_one_sentence_must_be_a_bool(taught):
    tok, model = taught
    with pytest.raises(TypeError, match="one_sentence must be True or False"):
        answer_with_probs(model, tok, ["Where?"], one_sentence=1)
    with pytest.raises(TypeError, match="one_sentence must be True or False"):
        sample_answers_many(model, tok, ["Where?"], n=2, generator=make_generator(0, "cpu"), one_sentence="yes")


def test_sampling_stops_one_token_after_the_first_sentence(taught):
    tok, model = taught
    ids = torch.tensor([chat_example(tok, "Who built it?", system="").prompt_ids])  # (1, T)
    with torch_threads(1):
        new = sample_padded(model, ids, torch.ones_like(ids), SamplingConfig(greedy=True), None, 40, stop_id=2,
                            row_done=sentence_stop(tok, 0))
    assert tok.decode(new[0].tolist()) == "Ana Rell. "  # the space that confirms the end, then no more decoding


def test_sentences_cuts_every_sentence_by_the_same_rule():
    from course_utils.rag.first_sentence import sentences

    assert sentences("Dr. Zellsen was born where? Who knows.\nNot I") == ["Dr. Zellsen was born where?", "Who knows.",
                                                                       "Not I"]
    assert sentences("") == [] and sentences("  \n ") == [] and sentences("Born in 1866.") == ["Born in 1866."]
