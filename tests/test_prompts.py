"""The opening sets stories are evaluated from: our held-out openings, openings in the tales corpus's own words,
and the training prompt itself."""

import re

import pytest

from storyjax.data.tales_generator import make_tale
from storyjax.prompts import CORPUS_OPENINGS, HELDOUT_OPENINGS, PAPER_PROMPT, story_openings

WORD = re.compile(r"[A-Za-z']+")


def test_corpus_openings_use_only_the_corpus_words_and_end_as_the_training_prompt_does():
    corpus = {w for i in range(3000) for w in WORD.findall(make_tale(0, i))}
    assert len(CORPUS_OPENINGS) == 52 == len(set(CORPUS_OPENINGS))
    unseen = {w for o in CORPUS_OPENINGS for w in WORD.findall(o)} - corpus
    assert not unseen, unseen
    assert all(o.endswith(",") for o in CORPUS_OPENINGS) and PAPER_PROMPT.endswith(",")
    assert PAPER_PROMPT not in CORPUS_OPENINGS
    # Our own held-out openings are another world: most of them hold words the corpus never uses.
    assert sum(bool(set(WORD.findall(o)) - corpus) for o in HELDOUT_OPENINGS) > 40


def test_each_set_is_chosen_by_name_and_a_bad_choice_is_refused_with_the_fix():
    assert story_openings("heldout", 3) == list(HELDOUT_OPENINGS[:3])
    assert story_openings("corpus", 2, exclude=(CORPUS_OPENINGS[0],)) == list(CORPUS_OPENINGS[1:3])
    assert story_openings("training", 1, training_prompt=PAPER_PROMPT) == [PAPER_PROMPT]
    with pytest.raises(ValueError, match="stories.num_openings=1"):
        story_openings("training", 52, training_prompt=PAPER_PROMPT)
    with pytest.raises(ValueError, match="stories.openings='mine'"):
        story_openings("mine", 3)
    with pytest.raises(ValueError, match="corpus openings asked for"):
        story_openings("corpus", 60)
