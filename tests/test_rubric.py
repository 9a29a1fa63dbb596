"""The rubric teacher ranks real prose above corruptions of it, over hundreds of Austen excerpts."""

import random
import re

import numpy as np
import pytest

from storyjax import adversarial as A
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
    # Paired: shuffling an excerpt's sentences lowers its grade far more often than it raises it (174 vs 19
    # of 300 when written, five of the six novels being the order model's training text; 76 vs 35 with the
    # hand-written order cues before it); the rest are ties of the 0–3 scale.
    assert (coh["original"] > coh["shuffled"]).sum() > 4 * (coh["original"] < coh["shuffled"]).sum()
    assert (coh["shuffled"] > coh["salad"]).mean() > 0.8


def test_readability_orders_original_above_salad(graded):
    read = {k: v[:, 0] for k, v in graded.items()}
    assert read["original"].mean() > 2.0 and read["salad"].mean() < 0.5  # Austen's long sentences rarely get 3
    assert (read["original"] > read["salad"]).mean() > 0.9


def test_empty_and_one_word_stories_get_zeros():
    for story in ["", "   ", "Dragon", "Once.", "the the", "upon a"]:
        assert R.grade(story) == (0, 0, 0), story


def test_a_story_opening_on_punctuation_alone_is_graded_not_a_crash():
    """A student wrote '!!' or '" .' before its first sentence (a crash of the rubric here once stopped an
    experiment): it is graded like the sentences that follow."""
    tail = " The fox ran to the old mill and saw the boat there. Then the fox went home to the den and slept."
    for opener in ("!!", '" .', "..."):
        grades = R.grade(opener + tail)
        assert all(0 <= g <= 3 for g in grades) and grades[0] >= 1, (opener, grades)


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


# Adversarial versions of each real passage: a reward the student can reach by a trick is what it learns.
ADJECTIVES = ("big small happy sad bright dark soft loud quiet warm cold kind brave clever gentle old young tall "
              "short red blue green golden silver shiny tiny huge lovely pretty strange wild calm busy lazy").split()


def repeated_sentence(text, seed):
    first = R.sentences(text)[0]
    return " ".join([first] * max(2, len(text.split()) // max(len(first.split()), 1)))


def doubled_sentences(text, seed):  # every sentence said twice, back to back
    return " ".join(x for s in R.sentences(text) for x in (s, s))


def clean_salad(text, seed):  # the passage's own real words, no punctuation inside, one full stop
    words = [w.lower() for w in re.findall(r"[A-Za-z']+", text)]
    random.Random(seed).shuffle(words)
    salad = " ".join(words)
    return salad[0].upper() + salad[1:] + "."


def adjective_list(text, seed):
    rng = random.Random(seed)
    return "It was " + ", ".join(rng.choice(ADJECTIVES) for _ in range(len(text.split()) - 3)) + " and happy."


def endless_sentence(text, seed):  # the passage's sentences strung together with "and"
    parts = [re.sub(r"[.!?]+[\"'”’)]*$", "", s) for s in R.sentences(text)]
    return " and ".join([parts[0]] + [p[0].lower() + p[1:] for p in parts[1:]]) + "."


# Mean sum of the three grades below the real passage's (out of 9), over 300 Austen excerpts. Measured when
# written: shuffle 0.48, salad 5.86, clean salad 6.15, repeated 4.38, doubled 3.91, adjectives 4.18,
# endless 4.33, empty 6.40 (the passages themselves: 6.40).
MARGINS = {"shuffled": (shuffle_sentences, 0.3), "salad": (word_salad, 5.0), "clean_salad": (clean_salad, 5.5),
           "repeated": (repeated_sentence, 3.5), "doubled": (doubled_sentences, 3.0),
           "adjectives": (adjective_list, 3.5), "endless": (endless_sentence, 3.5), "empty": (lambda t, s: "", 6.0)}


@pytest.mark.parametrize("trick", sorted(MARGINS))
def test_tricks_score_below_the_real_passage_by_a_stated_margin(excerpts, graded, trick):
    make, margin = MARGINS[trick]
    fooled = np.array([R.grade(make(p, i)) for i, p in enumerate(excerpts)])
    gap = graded["original"].sum(1) - fooled.sum(1)
    assert gap.mean() >= margin, (trick, gap.mean())
    if trick in ("salad", "clean_salad"):  # no floor for text without sentence structure
        assert fooled.sum(1).mean() <= 1.0
    if trick in ("shuffled", "repeated", "doubled"):  # told in the wrong order, or not told: coherence drops
        assert fooled[:, 1].mean() <= graded["original"][:, 1].mean() - 0.3


def test_one_sentence_said_ten_times_tells_no_story():
    assert R.grade("Lily was very happy. " * 10) == (3, 0, 0)
    assert R.grade("Lily was very happy. Lily was so very happy. Lily was very, very happy.")[1:] == (0, 0)


def test_a_story_cut_at_the_token_cap_keeps_the_grades_of_its_finished_sentences():
    """A student stopped by max_new_tokens mid-quote or mid-sentence is judged on what it finished. Before
    this rule, cutting 300 tales three words into a quote cost 0.47 readability and 0.50 coherence."""
    before, inside = [], []
    for i in range(300):
        tale = make_tale(5, i).replace("\n\n", " ")
        q = next(m.start() for m in re.finditer(r'(?<=[.!?] )"', tale) if m.start() > 100)
        before.append(R.grade(tale[:q].strip()))
        inside.append(R.grade(tale[:q] + " ".join(tale[q:].split()[:3])))
    np.testing.assert_allclose(np.mean(inside, 0), np.mean(before, 0), atol=0.02)


def test_non_words_cost_points_step_by_step_not_at_one_threshold(excerpts):
    """Replacing a growing share of a passage's words with non-words lowers readability and coherence a
    little at a time: no single step of 3% costs more than one point on average."""
    rng = random.Random(0)
    curve = []
    for share in (0.0, 0.03, 0.06, 0.09, 0.12, 0.15):
        rows = []
        for p in excerpts[:100]:
            words = p.split()
            for j in rng.sample(range(len(words)), int(share * len(words))):
                words[j] = "".join(rng.choice("bdgklmnprstvz") + rng.choice("aeiou") for _ in range(3))
            rows.append(R.grade(" ".join(words)))
        curve.append(np.mean(rows, 0)[:2])
    curve = np.array(curve)
    steps = curve[:-1] - curve[1:]
    assert (steps >= -0.05).all() and (steps <= 1.0).all(), curve
    assert (curve[-1] < 0.5).all() and (curve[0] > 1.5).all(), curve


# Cheap strategies as families (storyjax.adversarial), graded as batches the way a run grades them, on the
# 262 passages of Persuasion (the novel the sentence-order model was not trained on). Measured with each
# story graded on its own (sum of 9): real 7.28; pronoun templates 1.90, capitalised pseudo-words 0.00,
# pseudo-word nouns 0.06, unpunctuated tail 0.53, run-on tail 1.02, copied opening 2.05, "The end." 0.00,
# shuffled sentences 6.15, word salad 0.26, repeated sentence 2.20, one template across the batch 6.00 (4.00
# when a batch rule capped stories that shared sentence shapes, a rule that capped real tales too).
@pytest.fixture(scope="module")
def family_grades(austen_dir):
    chosen = A.passages([(austen_dir / "persuasion.txt").read_text()], 262)
    teacher = R.RubricTeacher()
    out = {}
    for family in ["real", *A.FAMILIES]:
        prompts, stories = A.stories(family, chosen)
        out[family] = np.concatenate([teacher.grade_batch(prompts[i:i + 32], stories[i:i + 32]).scores_Bx3
                                      for i in range(0, len(stories), 32)])
    return out


@pytest.mark.parametrize("family", sorted(A.FAMILIES))
def test_real_prose_beats_every_cheap_strategy_by_its_margin(family_grades, family):
    real, fooled = family_grades["real"].sum(1), family_grades[family].sum(1)
    assert real.mean() >= 5.5, real.mean()
    assert real.mean() - fooled.mean() >= 1.0, (family, real.mean(), fooled.mean())
    if family == "word_salad":
        assert fooled.mean() <= 1.5


def test_a_made_up_capitalised_word_is_a_name_only_when_it_recurs():
    once = "Zorvek went to the market. The Kwimbal sold him a Trasple and a Gorblin for his tea."
    twice = "Zorvek went to the market. Zorvek bought bread and cheese, and Zorvek carried them home."
    assert R.junk_rate(R._WORD.findall(once)) >= 0.2
    assert R.junk_rate(R._WORD.findall(twice)) == 0.0
    assert R.junk_rate(R._WORD.findall("Mr Kwimbal smiled at the boy.")) == 0.0  # a title makes a name


def test_a_pronoun_alone_does_not_link_sentences_about_other_things():
    unlinked = ["Her tall leaf dances.", "He red cake sings.", "They old stone jumps.", "Its blue boat sleeps."]
    linked = ["Ada found a leaf.", "She gave the leaf to Tom.", "He put it in a book.", "The book was old."]
    assert R.continuity(unlinked) == 0.0
    assert R.continuity(linked) == 1.0


def test_sentences_need_a_finite_verb_and_subjects_a_verb_after_them():
    assert R.verbless_rate(["They Pera Kume Vubu.", "She Tavi Rigi Zeru."]) == 1.0
    assert R.verbless_rate(["The old man walked home.", "They sing every night."]) == 0.0
    assert R.grammar_violation_rate(["He red cake dances."]) > 0
    assert R.grammar_violation_rate(["He quickly ran home."]) == 0


def test_the_unfinished_tail_is_graded():
    good = "Lily found a small kitten in the garden. She gave it some milk. The kitten purred and slept."
    tail = " cloud the apple sings green river quickly the of jumps blue under stone happy"
    assert R.grade(good)[0] == 3 and R.grade(good + tail)[0] <= 1


def test_a_storys_grade_is_its_own_whatever_else_its_batch_holds(excerpts, austen_dir):
    """Graded alone, beside its own sentence shuffles, beside one template filled in, or among other tales:
    the same grades. (A batch rule once capped every story sharing sentence shapes with another: real tales
    fell to 4.08 of 9 in training batches, and a novel passage moved by 5 points beside its shuffles.)"""
    teacher = R.RubricTeacher()
    passages = A.passages([(austen_dir / "persuasion.txt").read_text()], 8)
    prompts, shuffles = A.stories("shuffled_sentences", passages)
    templated = [A.batch_template("", random.Random(i)) for i in range(8)]
    alone = lambda ps, ss: np.array([teacher.grade_batch([p], [s]).scores_Bx3[0] for p, s in zip(ps, ss)])
    for ps, ss in ((prompts + prompts, passages + shuffles), ([""] * 8, templated), ([""] * 8, excerpts[:8])):
        np.testing.assert_array_equal(teacher.grade_batch(ps, ss).scores_Bx3, alone(ps, ss))
        np.testing.assert_array_equal(teacher.grade_batch(ps[::-1], ss[::-1]).scores_Bx3, alone(ps, ss)[::-1])


def test_the_opening_said_back_and_a_story_of_one_sentence_tell_no_story():
    prompt = "Let me tell you a long, magical tale. Once upon a time, in a faraway land,"
    assert R.grade_story(prompt, prompt + " " + prompt)[1:] == (0, 0)
    assert R.grade_story(prompt, prompt + " there lived a girl called Ada. The end.")[1] == 0


def _requote(text, opening, closing):
    """The passage's straight double quotation marks as another style's (an opening mark follows a space)."""
    return "".join((opening if text[i - 1:i] in ("", " ", "(", "—", "-") and text[i + 1:i + 2] != " " else closing)
                   if c == '"' else c for i, c in enumerate(text))


@pytest.mark.parametrize("opening,closing", [("“", "”"), ("‘", "’"), ("'", "'")])
def test_dialogue_in_another_quotation_style_reads_as_dialogue(austen_dir, opening, closing):
    """British editions quote with single marks. Measured when written on Persuasion's 262 passages (sum of
    9, real and shuffled): straight double 7.28 / 6.15; curly double 7.27 / 6.06; curly single 7.26 / 6.09;
    straight single 7.09 / 5.95 (6.97 / 5.90 before single marks were read as quotations)."""
    chosen = [_requote(p, opening, closing) for p in A.passages([(austen_dir / "persuasion.txt").read_text()], 262)]
    teacher = R.RubricTeacher()
    sums = {}
    for family in ("real", "shuffled_sentences"):
        prompts, stories = A.stories(family, chosen)
        sums[family] = np.concatenate([teacher.grade_batch(prompts[i:i + 32], stories[i:i + 32]).scores_Bx3
                                       for i in range(0, len(stories), 32)]).sum(1).mean()
    assert sums["real"] >= 7.0, sums
    assert sums["real"] - sums["shuffled_sentences"] >= 1.0, sums


@pytest.mark.parametrize("batch", [32, pytest.param(360, marks=pytest.mark.slow)])
def test_real_tales_beat_their_own_sentences_recombined_framed_alternated_and_shuffled(batch):
    """The rubric as training uses it (the training prompt, batches of 32 or 360 stories cut near the
    96-token cap): real held-out tale continuations at least a point above every way of recombining the
    corpus's own sentences. Measured when written (360 stories, 75 words): real 8.34; recombined across
    tales 6.21, framed 6.26, dialogue alternating with "And ..." 5.46, shuffled 6.58 (whole tales: real 8.04;
    5.53, 5.66, 4.61, 6.69). Graded one by one, as every story now is: the same in any batch."""
    from storyjax.prompts import PAPER_PROMPT
    real = A.tale_continuations(999, 360, PAPER_PROMPT)
    cut = lambda stories: [PAPER_PROMPT + " " + " ".join(s[len(PAPER_PROMPT):].split()[:75]) for s in stories]
    teacher = R.RubricTeacher()
    grade = lambda stories: np.concatenate([teacher.grade_batch([PAPER_PROMPT] * len(stories[i:i + batch]),
                                                                stories[i:i + batch]).scores_Bx3
                                            for i in range(0, len(stories), batch)]).sum(1).mean()
    real_sum = grade(cut(real))
    assert real_sum >= 7.5, real_sum
    for family, stories in A.tale_families(real, PAPER_PROMPT).items():
        assert real_sum - grade(cut(stories)) >= 1.0, (family, real_sum, grade(cut(stories)))
