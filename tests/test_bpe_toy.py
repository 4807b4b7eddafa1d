"""The word-level BPE toy (Sennrich et al., 2016) against merges worked out by hand."""

import pytest

from course_utils.text.bpe.toy import TOY_CORPUS, learn_toy_bpe, split_words, toy_merge, toy_pair_counts


def test_ten_merges_of_the_classic_corpus():
    steps = learn_toy_bpe(TOY_CORPUS, 10)
    assert [s.pair for s in steps] == [("e", "s"), ("es", "t"), ("est", "</w>"), ("l", "o"), ("lo", "w"),
                                       ("n", "e"), ("ne", "w"), ("new", "est</w>"), ("low", "</w>"), ("w", "i")]
    assert [s.count for s in steps] == [9, 9, 9, 7, 7, 6, 6, 6, 5, 3]
    assert steps[-1].words == {"low</w>": 5, "low e r </w>": 2, "newest</w>": 6, "wi d est</w>": 3}


def test_pair_counts_by_hand():
    counts = toy_pair_counts(split_words({"low": 5, "lower": 2}))
    assert counts[("l", "o")] == 7 and counts[("w", "</w>")] == 5 and counts[("e", "r")] == 2
    assert toy_merge({("a", "a", "a"): 1}, ("a", "a")) == {("aa", "a"): 1}
    assert split_words({"ab": 2}, end_of_word="") == {("a", "b"): 2}  # no end-of-word symbol at all


def test_stops_when_every_word_is_one_symbol_and_validates():
    assert len(learn_toy_bpe({"ab": 1}, 10)) == 2
    assert learn_toy_bpe(TOY_CORPUS, 0) == []
    with pytest.raises(ValueError, match="positive"):
        learn_toy_bpe({"ab": 0})
    with pytest.raises(ValueError, match="n_merges"):
        learn_toy_bpe(TOY_CORPUS, -1)


def test_numpy_counts_are_ints_and_bools_are_not():
    import numpy as np

    assert learn_toy_bpe(TOY_CORPUS, np.int64(3)) == learn_toy_bpe(TOY_CORPUS, 3)
    numpy_counts = {word: np.int64(count) for word, count in TOY_CORPUS.items()}
    assert split_words(numpy_counts) == split_words(TOY_CORPUS)
    assert all(type(c) is int for c in split_words(numpy_counts).values())
    with pytest.raises(ValueError, match="n_merges"):
        learn_toy_bpe(TOY_CORPUS, True)
    with pytest.raises(ValueError, match="counts must be positive ints"):
        split_words({"low": True})
