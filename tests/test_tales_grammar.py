"""The tales grammar: an exact instrument (and the positive control's teacher) for the tales corpus's world."""

import random

import numpy as np

from storyjax.data.tales_generator import make_tale
from storyjax.prompts import PAPER_PROMPT
from storyjax.teachers import config as teacher_config
from storyjax.teachers import make_teacher
from storyjax.teachers import rubric as R
from storyjax.teachers import tales_grammar as T

HELD_OUT = [make_tale(12345, i) for i in range(200)]  # a seed no pretraining run here uses


def test_every_held_out_tale_parses_whole_in_order_with_one_hero_helper_and_goal():
    for tale in HELD_OUT:
        p = T.read("", tale)
        assert (p.parsed, p.order, p.consistent, p.arc) == (1.0, 1.0, 1.0, len(T.LANDMARKS)), tale
        assert T.grade_story("", tale) == (3, 3, 3)


def test_word_shuffles_hardly_parse_and_earn_nothing():
    parsed, sums = [], []
    for i, tale in enumerate(HELD_OUT[:100]):
        words = tale.split()
        random.Random(i).shuffle(words)
        p = T.read("", " ".join(words))
        parsed.append(p.parsed)
        sums.append(sum(T.grade_story("", " ".join(words))))
    assert np.nanmean(parsed) < 0.05 and np.mean(sums) < 0.5


def test_shuffled_and_recombined_sentences_lose_order_or_consistency_and_a_point_or_more():
    shuffled, recombined = [], []
    for i in range(100):
        sents = R.sentences(HELD_OUT[i].replace("\n\n", " "))
        random.Random(i).shuffle(sents)
        shuffled.append(" ".join(sents))
        # the first half of one tale, the second half of another: every sentence parses, the story does not hold
        a, b = (R.sentences(HELD_OUT[j].replace("\n\n", " ")) for j in (i, (i + 1) % 100))
        recombined.append(" ".join(a[:len(a) // 2] + b[len(b) // 2:]))
    shuffled_p, recombined_p = [T.read("", t) for t in shuffled], [T.read("", t) for t in recombined]
    # (a shuffle can split "Do not worry. We can do it together," from its speaker: a few sentences stop parsing)
    assert np.mean([p.order for p in shuffled_p]) < 0.7 and np.mean([p.parsed for p in shuffled_p]) > 0.85
    assert np.mean([p.consistent for p in recombined_p]) < 0.9 and np.mean([p.parsed for p in recombined_p]) == 1.0
    grade_sum = lambda texts: np.mean([sum(T.grade_story("", t)) for t in texts])
    real = grade_sum(HELD_OUT[:100])
    assert real - grade_sum(shuffled) >= 1.0 and real - grade_sum(recombined) >= 1.0


def test_a_continuation_of_the_training_prompt_cut_by_the_token_cap_is_read_without_its_fragment():
    tale = HELD_OUT[0].replace("\n\n", " ")
    continuation = " there lived" + tale.split("there lived", 1)[1]
    cut = continuation[:continuation.index(".", 150) + 12]  # a few words past a full stop: a fragment
    p = T.read(PAPER_PROMPT, PAPER_PROMPT + cut)
    assert p.parsed == 1.0 and p.order == 1.0 and p.sentences >= 3
    assert T.read(PAPER_PROMPT, PAPER_PROMPT + " there lived").sentences == 0
    assert T.grade_story(PAPER_PROMPT, PAPER_PROMPT + " there lived") == (0, 0, 0)


def test_the_tales_teacher_is_a_kind_that_grades_and_judges_pairs():
    teacher = make_teacher(teacher_config.configured("tales"))
    g = teacher.grade_batch(["", ""], [HELD_OUT[0], "the the of fox."])
    np.testing.assert_array_equal(g.scores_Bx3, [[3, 3, 3], [0, 0, 0]])
    assert g.answers == ["3 3 3", "0 0 0"]
    prefs = teacher.prefer(["", ""], [HELD_OUT[0], "the the of fox."], [HELD_OUT[1], HELD_OUT[2]])
    np.testing.assert_array_equal(prefs.p_a_B, [0.5, 0.0])
    assert len(T.VERSION) == 12
