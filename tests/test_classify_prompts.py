"""k-shot prompts: the draw and the order are fixed by the seed, balanced draws are balanced, the shots appear in the
prompt in order with their label words, chat templates render through the tokenizer, a fixed last label is honoured
without changing the default draws, and bad input raises."""

import pytest
from test_lora_sft import tiny_chat_tokenizer

from course_utils.classify.genres import GENRES
from course_utils.classify.passages import Passage
from course_utils.classify.prompts import TEMPLATES, Template, build_prompt, draw_shots, get_template, split_prompt

POOL = [Passage(f"play_{g}_{i % 3}", g, i, 0, f"{g} passage number {i}") for g in GENRES for i in range(10)]
POOL += [Passage("play_comedy_x", "comedy", 99 + i, 0, f"extra comedy {i}") for i in range(20)]  # comedy-heavy pool


def test_the_draw_and_the_order_are_fixed_by_the_seed():
    assert draw_shots(POOL, 6, seed=3) == draw_shots(POOL, 6, seed=3)
    draws = {tuple(p.text for p in draw_shots(POOL, 6, seed=s)) for s in range(10)}
    assert len(draws) == 10
    three = [p for p in POOL if p.index == 0]  # one passage per genre: every draw is the same set
    orders = {tuple(p.genre for p in draw_shots(three, 3, seed=s)) for s in range(30)}
    assert len(orders) >= 4  # of the 3! = 6 orders: the order is shuffled too


def test_balanced_draws_are_balanced_and_unbalanced_follow_the_pool():
    for k in range(0, 10):
        counts = [sum(p.genre == g for p in draw_shots(POOL, k, seed=k)) for g in GENRES]
        assert sum(counts) == k and max(counts) - min(counts) <= 1
    assert len(set(draw_shots(POOL, 30, seed=0))) == 30  # no passage twice
    comedies = sum(p.genre == "comedy" for s in range(200) for p in draw_shots(POOL, 1, seed=s, balanced=False))
    assert 100 < comedies < 140  # 30 of the 50 passages are comedies: 120 of 200 draws expected, sd about 7


# draw_shots(POOL, k, seed, balanced) recorded before last_genre existed: (genre initial, index) of each shot in order
RECORDED = {(1, 0, False): "c113", (4, 7, False): "t7 c7 h9 h5", (8, 1003, False): "c8 c3 c100 c7 c1 c107 c108 c109",
            (1, 5, True): "t6", (5, 2, True): "t8 c100 t5 c107 h6", (9, 11, True): "t8 h1 h6 t2 t9 c1 h3 c108 c0"}


def test_default_draws_are_the_draws_recorded_before_last_genre():
    for (k, seed, balanced), expected in RECORDED.items():
        for shots in (draw_shots(POOL, k, seed, balanced=balanced),
                      draw_shots(POOL, k, seed, balanced=balanced, last_genre=None)):
            assert " ".join(f"{p.genre[0]}{p.index}" for p in shots) == expected


def test_last_genre_fixes_the_last_shot_only():
    for genre in GENRES:
        for k in (1, 2, 3, 4, 8):
            for balanced in (False, True):
                for seed in range(5):
                    shots = draw_shots(POOL, k, seed, balanced=balanced, last_genre=genre)
                    assert len(shots) == k and len(set(shots)) == k and shots[-1].genre == genre
                    assert shots == draw_shots(POOL, k, seed, balanced=balanced, last_genre=genre)
                    if balanced:   # all k shots balanced, the last one counted
                        counts = [sum(p.genre == g for p in shots) for g in GENRES]
                        assert max(counts) - min(counts) <= 1
    # the other shots: uniform from the rest of the pool (30 of the 49 passages left after the last shot are comedies:
    # 122 of 200 expected, sd about 7), in an order that varies with the seed; the last shot varies within its genre
    firsts = [draw_shots(POOL, 2, s, balanced=False, last_genre="history")[0] for s in range(200)]
    assert 100 < sum(p.genre == "comedy" for p in firsts) < 145
    lasts = {draw_shots(POOL, 3, s, balanced=False, last_genre="tragedy")[-1] for s in range(50)}
    assert len(lasts) >= 6                                    # of the 10 tragedies
    three = [p for p in POOL if p.index == 0]
    orders = {tuple(p.genre for p in draw_shots(three, 3, seed=s, last_genre="comedy")) for s in range(30)}
    assert orders == {("history", "tragedy", "comedy"), ("tragedy", "history", "comedy")}


def test_prompt_holds_the_shots_in_order_then_the_query():
    shots = draw_shots(POOL, 4, seed=1)
    prompt = build_prompt("genre", "the query", shots)
    positions = [prompt.index(s.text + "\nGenre: " + s.genre) for s in shots]
    assert positions == sorted(positions) and prompt.endswith("Passage:\nthe query\nGenre:")
    assert build_prompt("genre", "q") == "Passage:\nq\nGenre:"
    assert build_prompt("question", "q").startswith(TEMPLATES["question"].instruction + "\n\n")
    letters = build_prompt("letters", "q", [Passage("w", "history", 0, 0, "h")])
    assert "Passage:\nh\nAnswer: B\n\n" in letters


def test_at_least_eight_templates_with_distinct_labels():
    assert len(TEMPLATES) >= 8 and sum(t.chat for t in TEMPLATES.values()) >= 2
    for template in TEMPLATES.values():
        labels = template.labels()
        assert len(set(labels)) == 3 and all(l.strip() for l in labels)
        # raw text and after an answer prefix: a leading space; right after the assistant turn: none
        assert all(l.startswith(" ") != (template.chat and not template.answer_prefix) for l in labels)
        assert template.example.rstrip() == template.example
    assert TEMPLATES["cloze"].label_of("history") == " history play"


def test_chat_templates_render_through_the_tokenizer():
    tok = tiny_chat_tokenizer()
    shots = draw_shots(POOL, 2, seed=0)
    inline = build_prompt("chat_inline", "q", shots, tok)
    assert inline.count("<|im_start|>user") == 1 and inline.endswith("<|im_start|>assistant\n")
    turns = build_prompt("chat_turns", "q", shots, tok)
    assert turns.count("<|im_start|>user") == 3 and turns.count("<|im_start|>assistant\n") == 3
    assert f"<|im_start|>assistant\n{shots[0].genre}<|im_end|>" in turns
    assert turns.count(TEMPLATES["chat_turns"].instruction + "\n\nPassage:\n") == 3  # in every user turn
    cue = build_prompt("chat_cue", "q", shots, tok)  # the assistant's answer opened with the cue: one-token labels
    assert cue.endswith("<|im_start|>assistant\nGenre:") and TEMPLATES["chat_cue"].labels()[0] == " comedy"
    for shot in shots:  # each shot carries the cue before its label, as the answer will: not "...verse. comedy"
        assert f"Passage:\n{shot.text}\nGenre: {shot.genre}" in cue
        assert f"{shot.text} {shot.genre}" not in cue
    # zero-shot, instructed is chat_cue's prompt without the chat wrapper, same cue and labels: only the wrapper differs
    raw, zero_cue = build_prompt("instructed", "q"), build_prompt("chat_cue", "q", [], tok)
    assert raw.endswith("\nGenre:") and "<|im_start|>" not in raw
    assert f"<|im_start|>user\n{raw[:-len(chr(10) + 'Genre:')]}<|im_end|>" in zero_cue
    assert TEMPLATES["instructed"].labels() == TEMPLATES["chat_cue"].labels()


def test_split_prompt_cuts_after_the_last_shot():
    for k in (1, 4):
        shots = draw_shots(POOL, k, seed=k)
        for name in ("genre", "question", "letters"):
            prefix, suffix = split_prompt(name, "the query", shots)
            assert prefix + suffix == build_prompt(name, "the query", shots)
            assert prefix.endswith(TEMPLATES[name].label_of(shots[-1].genre).strip())
            assert split_prompt(name, "other", shots)[0] == prefix  # the same prefix for every passage
    with pytest.raises(ValueError, match="at least one shot"):
        split_prompt("genre", "q", [])
    with pytest.raises(ValueError, match="raw-text"):
        split_prompt("chat_inline", "q", draw_shots(POOL, 1, seed=0))
    with pytest.raises(ValueError, match="answer_prefix"):
        Template("bad", "{text}", ("a", "b", "c"), answer_prefix="Genre:")  # raw text has no assistant turn


def test_bad_input_raises():
    with pytest.raises(ValueError, match="larger than the pool"):
        draw_shots(POOL[:3], 4, seed=0)
    with pytest.raises(ValueError, match="balanced draw"):
        draw_shots(POOL[:12], 6, seed=0)  # 10 comedies and 2 histories: no 2 tragedies
    with pytest.raises(ValueError, match="k must be"):
        draw_shots(POOL, -1, seed=0)
    with pytest.raises(ValueError, match="last_genre must be one of"):
        draw_shots(POOL, 2, seed=0, last_genre="drama")
    for wrong_type in (0, ["comedy"], True):                         # not a str: TypeError, like pool and seed
        with pytest.raises(TypeError, match="last_genre must be a str"):
            draw_shots(POOL, 2, seed=0, last_genre=wrong_type)
    with pytest.raises(ValueError, match="k >= 1"):
        draw_shots(POOL, 0, seed=0, last_genre="comedy")            # k = 0 has no last shot: an error, not []
    with pytest.raises(ValueError, match="no tragedy passage"):
        draw_shots(POOL[:10], 1, seed=0, balanced=False, last_genre="tragedy")   # 10 comedies only
    with pytest.raises(ValueError, match="balanced draw"):
        draw_shots(POOL[:12], 6, seed=0, last_genre="history")
    with pytest.raises(ValueError, match="unknown template"):
        get_template("nope")
    with pytest.raises(ValueError, match="chat template"):
        build_prompt("chat_inline", "q", [])
    with pytest.raises(TypeError, match="list of Passage"):
        build_prompt("genre", "q", "a shot")
    with pytest.raises(TypeError, match="list of Passage"):
        build_prompt("genre", "q", POOL[0])  # one Passage, not a list of them
    with pytest.raises(TypeError, match="Template"):
        build_prompt(Template, "q")


def test_numpy_k_and_seed_give_the_same_draw():
    import numpy as np

    for balanced in (True, False):
        assert draw_shots(POOL, np.int64(6), np.int64(3), balanced=balanced, last_genre="comedy") == \
            draw_shots(POOL, 6, 3, balanced=balanced, last_genre="comedy")
    with pytest.raises(ValueError, match="k must be an int >= 0"):
        draw_shots(POOL, np.float64(6.0), 3)
    with pytest.raises(TypeError, match="seed must be an int"):
        draw_shots(POOL, 6, np.float64(3.0))
