"""The rubric teacher ranks real prose above corruptions of it, over hundreds of Austen excerpts."""

import random

import numpy as np
import pytest

from storyjax.data import common
from storyjax.data.tales_generator import make_tale
from storyjax.teachers import rubric as R

N_EXCERPTS = 300


@pytest.fixture(scope="module")
def excerpts(austen_dir):
    out = []
    for f in sorted(austen_dir.glob("*.txt")):
        out += [p for p in common.paragraphs(f.read_text(), True)
                if 60 <= len(p.split()) <= 200 and len(R.sentences(p)) >= 4]
    random.Random(0).shuffle(out)
    assert len(out) >= N_EXCERPTS
    return out[:N_EXCERPTS]


def shuffle_sentences(text, seed):
    sents = R.sentences(text)
    rng, shuffled = random.Random(seed), list(sents)
    while shuffled == sents:
        rng.shuffle(shuffled)
    return " ".join(shuffled)


def word_salad(text, seed):
    words = text.split()
    random.Random(seed).shuffle(words)
    return " ".join(words)


@pytest.fixture(scope="module")
def graded(excerpts):
    return {
        "original": np.array([R.grade(p) for p in excerpts]),
        "shuffled": np.array([R.grade(shuffle_sentences(p, i)) for i, p in enumerate(excerpts)]),
        "salad": np.array([R.grade(word_salad(p, i)) for i, p in enumerate(excerpts)]),
    }


def test_coherence_orders_original_above_shuffled_above_salad(graded):
    coh = {k: v[:, 1] for k, v in graded.items()}
    assert coh["original"].mean() > coh["shuffled"].mean() + 0.15 > coh["salad"].mean() + 0.15
    # Paired: shuffling an excerpt's sentences lowers its grade about twice as often as it raises it
    # (76 vs 35 of 300 when written); the rest are ties of the 0–3 scale.
    assert (coh["original"] > coh["shuffled"]).sum() > 1.8 * (coh["original"] < coh["shuffled"]).sum()
    assert (coh["shuffled"] > coh["salad"]).mean() > 0.8


def test_readability_orders_original_above_salad(graded):
    read = {k: v[:, 0] for k, v in graded.items()}
    assert read["original"].mean() > 2.0 and read["salad"].mean() < 0.5  # Austen's long sentences rarely get 3
    assert (read["original"] > read["salad"]).mean() > 0.9


def test_empty_and_one_word_stories_get_zeros():
    for story in ["", "   ", "Dragon", "Once.", "the the", "upon a"]:
        assert R.grade(story) == (0, 0, 0), story


def test_heavy_repetition_gets_low_creativity():
    rng = random.Random(1)
    for i in range(50):
        tale = make_tale(0, i)
        first = R.sentences(tale)[0]
        looped = " ".join([first] * rng.randint(4, 8))
        assert R.grade(looped)[2] <= 1, looped
        assert R.grade(tale)[2] >= 2


def test_a_clean_prompt_does_not_carry_a_garbled_continuation():
    prompt = "Once upon a time, in a faraway land,"
    good = prompt + " there lived a kind bear named Ben. He loved honey more than anything. One day he found a hive."
    assert R.grade_story(prompt, good)[0] >= 2
    assert R.grade_story(prompt, prompt) == (0, 0, 0)  # nothing added
    assert R.grade_story(prompt, prompt + " a a the catZo longA of the.") == (0, 0, 0)
    assert min(R.grade_story(prompt, prompt + " " + make_tale(0, i).split(", ", 2)[-1]) for i in range(20)) >= (2, 1, 2)


def test_rubric_teacher_batches_and_answers_like_an_llm():
    teacher = R.RubricTeacher()
    stories = [make_tale(3, i) for i in range(5)] + [""]
    grades = teacher.grade_batch(["Once upon a time"] * 6, stories)
    assert grades.scores_Bx3.shape == (6, 3) and grades.scores_Bx3.dtype == np.float32
    assert grades.answers[-1] == "0 0 0"
    assert all(len(a.split()) == 3 for a in grades.answers)
    np.testing.assert_array_equal(grades.scores_Bx3, teacher.grade_batch([""] * 6, stories).scores_Bx3)


def test_syllables_come_from_the_pronouncing_dictionary():
    assert [R.syllables(w) for w in ("cat", "striking", "beautiful", "Elizabeth")] == [1, 2, 3, 4]
    assert R.syllables("zorblefrump") >= 2  # unknown words fall back to hyphenation
