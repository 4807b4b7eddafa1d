"""The emotion dataset: held-out events, balance, determinism, answer matching."""

import re
from collections import Counter

import pytest

from course_utils.lora.emotions import (EMOTIONS, EVENTS, FRAMES, EmotionExample, contains_label, emotion_dataset,
                                        instruction, match_label, split_events)

EMOTION_WORDS = ("happy", "happiness", "sad", "angry", "anger", "scared", "afraid", "fear", "furious", "delighted",
                 "glad", "joy", "sadness", "upset", "terrified", "frightened", "annoyed", "mad", "worried", "nervous",
                 "thrilled", "excited", "cried", "tears", "proud", "lonely", "heartbroken", "panic", "surprised",
                 "shocked", "horrified", "relieved", "grateful", "love", "hate")


def test_events_and_frames_are_many_distinct_and_free_of_emotion_words():
    assert set(EVENTS) == set(EMOTIONS) == {"joy", "sadness", "anger", "fear"}
    everything = [e for emotion in EMOTIONS for e in EVENTS[emotion]]
    assert all(len(EVENTS[emotion]) >= 32 for emotion in EMOTIONS)
    assert len(set(everything)) == len(everything)  # no event under two emotions
    assert len(FRAMES) >= 10 and len(set(FRAMES)) == len(FRAMES)
    for phrase in everything + list(FRAMES):
        words = set(re.findall(r"[a-z']+", phrase.lower()))
        assert not words & set(EMOTION_WORDS), (phrase, words & set(EMOTION_WORDS))
    for frame in FRAMES:
        assert frame.count("{event}") == 1 and frame[0].isupper() and frame.endswith(".")
    for event in everything:  # events fit the frames: lower case unless "I", no final full stop
        assert event == event.strip() and not event.endswith(".") and (event[0].islower() or event.startswith("I "))


def test_split_is_disjoint_and_held_out_fraction_is_respected():
    train, held = split_events(seed=3, held_out_fraction=0.35)
    for emotion in EMOTIONS:
        assert not set(train[emotion]) & set(held[emotion])
        assert sorted(train[emotion] + held[emotion]) == sorted(EVENTS[emotion])
        assert len(held[emotion]) == round(0.35 * len(EVENTS[emotion]))
    assert split_events(seed=3) == split_events(seed=3)
    assert split_events(seed=3) != split_events(seed=4)
    tiny_train, tiny_held = split_events(seed=0, held_out_fraction=0.001)
    assert all(len(tiny_held[e]) == 1 for e in EMOTIONS)  # at least one event held out, at least one kept
    huge_train, huge_held = split_events(seed=0, held_out_fraction=0.999)
    assert all(len(huge_train[e]) == 1 and len(huge_held[e]) == len(EVENTS[e]) - 1 for e in EMOTIONS)


def test_dataset_uses_only_held_out_events_for_test_and_is_balanced():
    train, test = emotion_dataset(200, 80, seed=1)
    assert len(train) == 200 and len(test) == 80
    assert all(isinstance(x, EmotionExample) for x in train + test)
    _, held = split_events(seed=1)
    held_all = {e for emotion in EMOTIONS for e in held[emotion]}
    assert all(x.event in held[x.label] for x in test)
    assert not any(x.event in held_all for x in train)
    assert not {x.text for x in train} & {x.text for x in test}
    assert len({x.text for x in train}) == 200 and len({x.text for x in test}) == 80  # no repeats within a split
    assert Counter(x.label for x in train) == {e: 50 for e in EMOTIONS}
    assert Counter(x.label for x in test) == {e: 20 for e in EMOTIONS}
    for x in train + test:
        assert x.event in EVENTS[x.label]
        assert any(x.text == frame.format(event=x.event) for frame in FRAMES)
    assert len({x.label for x in train[:12]}) > 1  # emotions are shuffled, not in blocks


def test_dataset_is_deterministic_and_nearly_balanced_for_any_n():
    assert emotion_dataset(30, 10, seed=5) == emotion_dataset(30, 10, seed=5)
    assert emotion_dataset(30, 10, seed=5) != emotion_dataset(30, 10, seed=6)
    train, test = emotion_dataset(7, 1, seed=0)
    assert sorted(Counter(x.label for x in train).values()) == [1, 2, 2, 2]
    assert len(test) == 1


def test_dataset_rejects_bad_arguments():
    with pytest.raises(ValueError, match="n_train"):
        emotion_dataset(0, 10)
    with pytest.raises(ValueError, match="n_test"):
        emotion_dataset(10, 2.5)
    with pytest.raises(ValueError, match="held_out_fraction"):
        emotion_dataset(10, 10, held_out_fraction=1.0)
    with pytest.raises(ValueError, match="held_out_fraction"):
        split_events(held_out_fraction=0.0)
    with pytest.raises(ValueError, match="seed"):
        emotion_dataset(10, 10, seed=-1)
    _, held = split_events(seed=0)
    most = min(len(held[e]) for e in EMOTIONS) * len(FRAMES) * len(EMOTIONS)
    assert len(emotion_dataset(10, most)[1]) == most  # exactly enough distinct pairs
    with pytest.raises(ValueError, match="at most"):
        emotion_dataset(10, most + 4)


def test_instruction_lists_the_labels_and_quotes_the_sentence():
    message = instruction("Yesterday my cat had to be put down.")
    assert message.endswith(' "Yesterday my cat had to be put down."')
    assert all(emotion in message.split('"')[0] for emotion in EMOTIONS)   # the labels come before the sentence
    with pytest.raises(ValueError):
        instruction("  ")


@pytest.mark.parametrize("answer, strict, lenient", [
    ("sadness", "sadness", "sadness"),
    ("Sadness.", "sadness", "sadness"),
    (" joy!", "joy", "joy"),
    ('"Fear"', "fear", "fear"),
    ("\u201cAnger\u201d, because someone keyed the car", "anger", "anger"),
    ("The emotion is fear", None, "fear"),  # strict: the first word is not a label
    ("joy/sadness", None, None),  # strict: not a single label; lenient: two labels
    ("Joy, and some sadness", "joy", None),
    ("fearful", None, None),  # not the label word
    ("sad", None, None),
    ("", None, None),
    ("   ", None, None),
])
def test_answer_matching(answer, strict, lenient):
    assert match_label(answer) == strict
    assert contains_label(answer) == lenient


def test_answer_matching_rejects_non_strings():
    with pytest.raises(TypeError):
        match_label(None)
    with pytest.raises(TypeError):
        contains_label(3)


def test_numpy_numbers_give_the_same_dataset():
    import numpy as np

    assert emotion_dataset(np.int64(30), np.int32(10), seed=np.int64(5), held_out_fraction=np.float32(0.25)) == \
        emotion_dataset(30, 10, seed=5, held_out_fraction=float(np.float32(0.25)))
    assert split_events(np.int64(3), np.float64(0.5)) == split_events(3, 0.5)
    for kwargs in ({"n_train": True}, {"seed": np.float64(1.0)}, {"held_out_fraction": np.float32(np.nan)}):
        with pytest.raises(ValueError, match="must be"):
            emotion_dataset(**{"n_train": 8, "n_test": 4, **kwargs})
