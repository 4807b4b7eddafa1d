"""Answers as text: the parser on hand-made answers; constrained decoding always spells a label, equals the label
scores' argmax for one-token labels and a plain full-forward greedy search over the label tree for longer ones."""

import pytest
import torch
from test_lora_sft import tiny_chat_tokenizer, tiny_llama

from course_utils.classify.answers import constrained_labels, free_answers, genres_named, parse_label
from course_utils.classify.prompts import get_template
from course_utils.classify.scoring import label_logprobs_many
from course_utils.device import torch_threads

PROMPTS = ["Hi\nGenre:", "To be, or not to be.\nGenre:", "A horse!\nGenre:", "xyz", "Now is the winter\n=>"]


@pytest.fixture(autouse=True)
def one_thread():
    with torch_threads(1):
        yield


def test_parse_label_on_hand_made_answers():
    genre, letters = get_template("genre"), get_template("letters")
    assert parse_label(" Comedy.", genre) == "comedy"
    assert parse_label("tragedy, not a comedy", genre) is None  # names two genres: the parser reads no negation
    assert parse_label("I think it is a history.", genre) == "history"  # the only label named
    assert parse_label("a comedy or a tragedy", genre) is None  # several: a format failure
    assert parse_label("comedian", genre) is None  # whole words only
    assert parse_label("", genre) is None
    assert parse_label("B) history", letters) == "history"
    assert parse_label("A cat", letters) == "comedy"  # the letter template reads the first word
    assert parse_label("B) a history", letters) == "history"  # a one-letter label only as the first word: "a" is not A
    assert parse_label("C) The play is a tragedy", letters) == "tragedy" and parse_label("C", letters) == "tragedy"
    assert parse_label("A history play", letters) is None  # A (comedy) first, then history: several
    assert parse_label("cloze", get_template("cloze")) is None
    assert parse_label("a history play", get_template("cloze")) == "history"
    with pytest.raises(TypeError, match="Template"):
        parse_label("comedy", "genre")


def test_parse_label_reads_plurals_and_adjectives_and_fails_on_several_genres():
    genre = get_template("genre")
    assert parse_label("The play is a comedic romp", genre) == "comedy"
    assert parse_label("Comical.", genre) == "comedy"
    assert parse_label("It is one of the histories.", genre) == "history"
    assert parse_label("A historical drama", genre) == "history"
    assert parse_label("tragic", genre) == "tragedy"
    assert parse_label("one of his tragedies", genre) == "tragedy"
    # SmolLM2 reading back the options: two genres named, one as an adjective -> a format failure
    assert parse_label("The play is a comedy, a historical", genre) is None
    assert genres_named("The play is a comedy, a historical", genre) == ["comedy", "history"]
    # several genres wherever they stand, adjectives included, fail: no first word decides
    for answer in ("Tragic, not comical", "Comic relief aside, this is a tragedy", "comedic tragedy",
                   "Historical tragedy.", "Comedy, history or tragedy", "comedy or tragedy"):
        assert parse_label(answer, genre) is None, answer
        assert len(genres_named(answer, genre)) >= 2, answer
    assert parse_label("No, the play is a comedy.", genre) == "comedy"
    assert parse_label("historically", genre) is None and genres_named("a comedian", genre) == []
    assert parse_label("Historical, I think", get_template("letters")) == "history"  # forms work for any template
    with pytest.raises(TypeError, match="string"):
        genres_named(3, genre)


def plain_greedy_label(model, tokenizer, prompt, labels):
    """The reference: a full forward pass per step, the argmax over the tokens that continue a label."""
    label_ids = [tokenizer(l, add_special_tokens=False)["input_ids"] for l in labels]
    ids, prefix = tokenizer(prompt, add_special_tokens=False)["input_ids"], []
    while prefix not in label_ids:
        allowed = {l[len(prefix)] for l in label_ids if l[:len(prefix)] == prefix and len(l) > len(prefix)}
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids + prefix])).logits[0, -1]
        prefix.append(max(allowed, key=lambda t: logits[t].item()))
    return label_ids.index(prefix)


def test_constrained_decoding_matches_a_plain_greedy_search_over_the_labels():
    tok, model = tiny_chat_tokenizer(), tiny_llama()
    labels = [" comedy", " history play", " his", " tragedy"]  # " his" is a token-prefix of " history play"
    chosen = constrained_labels(model, tok, PROMPTS, labels, progress=False)
    assert chosen == [plain_greedy_label(model, tok, p, labels) for p in PROMPTS]
    one_token = ["a", "b", "c", " "]
    scores = label_logprobs_many(model, tok, PROMPTS, one_token, progress=False)
    assert constrained_labels(model, tok, PROMPTS, one_token, progress=False) == scores.argmax(1).tolist()


def test_free_answers_are_strings_and_bad_input_raises():
    tok, model = tiny_chat_tokenizer(), tiny_llama()
    answers = free_answers(model, tok, PROMPTS[:2], max_new_tokens=3, progress=False)
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
    with pytest.raises(ValueError, match="distinct"):
        constrained_labels(model, tok, PROMPTS, [" a", " a"])
    with pytest.raises(ValueError, match="prompts is empty"):
        constrained_labels(model, tok, [], [" a"])


def test_free_answers_take_numpy_counts():
    import numpy as np

    tok, model = tiny_chat_tokenizer(), tiny_llama()
    assert free_answers(model, tok, PROMPTS, max_new_tokens=np.int64(3), batch_size=np.int64(2), progress=False) == \
        free_answers(model, tok, PROMPTS, max_new_tokens=3, batch_size=2, progress=False)
