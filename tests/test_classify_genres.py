"""The First Folio genre table: every key is a work of the installed corpus, every label one of three, the counts
are the catalogue's (14 comedies, 10 histories, 11 tragedies), and every corpus work is labelled or left out."""

import pytest

from course_utils.classify.genres import FOLIO_GENRES, GENRES, LEFT_OUT, genre_counts, genre_of, labelled_works
from course_utils.text.corpus import list_works


def test_every_key_is_in_the_corpus_and_every_label_is_a_genre():
    works = list_works()
    assert set(FOLIO_GENRES) <= set(works)
    assert set(LEFT_OUT) <= set(works)
    assert set(FOLIO_GENRES.values()) <= set(GENRES)


def test_every_corpus_work_is_labelled_or_left_out_with_a_reason():
    assert not set(FOLIO_GENRES) & set(LEFT_OUT)
    assert set(FOLIO_GENRES) | set(LEFT_OUT) == set(list_works())
    assert all(reason for reason in LEFT_OUT.values())


def test_counts_and_awkward_cases_follow_the_catalogue():
    assert genre_counts() == {"comedy": 14, "history": 10, "tragedy": 11}
    assert genre_of("cymbeline") == "tragedy"
    assert genre_of("tempest") == genre_of("winters_tale") == "comedy"
    assert genre_of("julius_caesar") == genre_of("antony_and_cleopatra") == "tragedy"
    assert all(genre_of(w) == "history" for w in list_works() if w.startswith(("henry_", "richard_")))


def test_labelled_works_filters_and_rejects_bad_input(monkeypatch):
    assert set(labelled_works(("comedy",)).values()) == {"comedy"}
    assert labelled_works() == dict(sorted(FOLIO_GENRES.items()))
    assert list(labelled_works()) == sorted(FOLIO_GENRES)  # sorted by key (dict equality ignores order)
    assert genre_counts({"tempest": "comedy"}) == {"comedy": 1, "history": 0, "tragedy": 0}  # zeros included
    with pytest.raises(ValueError, match="non-empty subset"):
        labelled_works(())
    with pytest.raises(ValueError, match="subset"):
        labelled_works(("romance",))
    with pytest.raises(ValueError, match="not in the First Folio"):
        genre_of("pericles")
    with pytest.raises(ValueError, match="absent from its catalogue"):
        genre_of("troilus_and_cressida")
    with pytest.raises(ValueError, match="unknown work"):
        genre_of("the_two_noble_kinsmen")
    import course_utils.classify.genres as genres

    monkeypatch.setattr(genres, "list_works", lambda: {"macbeth": "Macbeth"})  # another edition of the corpus
    with pytest.raises(FileNotFoundError, match="lacks"):
        labelled_works()
