"""k-shot prompts: the draw and the order are fixed by the seed, balanced draws are balanced, the shots appear in the
prompt in order with their label words, chat templates render through the tokenizer, and bad input raises."""

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
    cue = build_prompt("chat_cue", "q", shots, tok)  # the assistant's answer opened with the cue: one-token labels
    assert cue.endswith("<|im_start|>assistant\nGenre:") and TEMPLATES["chat_cue"].labels()[0] == " comedy"
    # zero-shot, instructed is chat_cue's user turn as raw text, with the same cue and labels: only the wrapper differs
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
    with pytest.raises(ValueError, match="unknown template"):
        get_template("nope")
    with pytest.raises(ValueError, match="chat template"):
        build_prompt("chat_inline", "q", [])
    with pytest.raises(TypeError, match="list of Passage"):
        build_prompt("genre", "q", "a shot")
    with pytest.raises(TypeError, match="Template"):
        build_prompt(Template, "q")
