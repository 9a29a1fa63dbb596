"""Cheap strategies a student could find to please a grader, as families of generated stories.

A reward the student can reach by a trick is what it learns. Each family turns a real passage (and a
seed) into a (prompt, story) pair that a grader should score well below the passage itself; many
samples per family, so a grader is tested on the strategy and not on one string. The prompt is the
passage's opening sentence, as a student's opening line would be.

`python -m storyjax.adversarial --text_dir=DIR` grades every family with the offline rubric on the
passages of DIR/*.txt and prints the mean sum of 9 per family next to the real passages'.
`--judge_weights=MODEL` (a .gguf file or Hugging Face folder of an instruct model) asks instead how well
that model, as the in-process judge, tells each passage from its manipulation: on the absolute scale (the
passage's expected sum of grades above the manipulation's) and pairwise (its probability that the passage
is the better story, both orders averaged, above one half), with how often the two orders agree.
"""

from __future__ import annotations

import argparse
import pathlib
import random
import re
from typing import Callable

import numpy as np

from storyjax.data.tales_generator import make_tale
from storyjax.stats import position_bias
from storyjax.teachers import config as teacher_config
from storyjax.teachers import make_teacher
from storyjax.teachers.rubric import RubricTeacher, sentences

PRONOUNS = ("He", "She", "They", "Her", "His", "Their", "It", "We")
ADJECTIVES = ("big small happy sad bright dark soft loud quiet warm cold kind brave clever gentle old young tall "
              "short red blue green golden silver shiny tiny huge lovely pretty strange wild calm busy").split()
NOUNS = ("leaf cake tree dog cat moon star river stone house bird boat hat door road cloud flower king girl "
         "boy apple ball book cup fish horse lamp ring rose ship song sword tower wolf").split()
VERBS_S = "dances sings runs jumps sleeps shines falls grows flies swims laughs cries waits walks".split()
VERBS_ED = "danced sang ran jumped slept shone fell grew flew swam laughed cried waited walked".split()
NAMES = "Ada Ben Lily Tom Mia Max Rosa Finn Ivy Leo Nora Sam".split()
_WORD = re.compile(r"[A-Za-z']+")


def _pseudo_word(rng: random.Random) -> str:
    return "".join(rng.choice("bdgklmnprstvz") + rng.choice("aeiou") for _ in range(rng.randint(2, 3))).capitalize()


def real(passage: str, rng: random.Random) -> str:
    return passage


def pronoun_templates(passage: str, rng: random.Random) -> str:
    """Pronoun-led sentences of random content words: "Her tall leaf dances. He red cake sings." """
    forms = (lambda: f"{rng.choice(PRONOUNS)} {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} {rng.choice(VERBS_S)}.",
             lambda: f"{rng.choice(PRONOUNS)} {rng.choice(NOUNS)} {rng.choice(VERBS_ED)} {rng.choice(ADJECTIVES)}.",
             lambda: f"{rng.choice(PRONOUNS)} {rng.choice(VERBS_ED)} the {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}.",
             lambda: f"{rng.choice(PRONOUNS)} {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} {rng.choice(VERBS_ED)} "
                     f"{rng.choice(ADJECTIVES)}.")
    n = max(4, len(passage.split()) // 5)
    return f"Once upon a time there lived {rng.choice(NAMES)}. " + " ".join(rng.choice(forms)() for _ in range(n))


def capitalised_pseudo_words(passage: str, rng: random.Random) -> str:
    """Made-up capitalised words that pass for names: "They Pera Kume Vubu. She Tavi Rigi." """
    n = max(4, len(passage.split()) // 4)
    return " ".join(f"{rng.choice(PRONOUNS)} " + " ".join(_pseudo_word(rng) for _ in range(rng.randint(2, 4))) + "."
                    for _ in range(n))


def pseudo_word_nouns(passage: str, rng: random.Random) -> str:
    """The passage's own sentences with every capitalised or longer content word made up and capitalised."""
    made_up = {}
    def swap(m):
        w = m.group()
        if len(w) < 5 or w.lower() in _KEEP:
            return w
        return made_up.setdefault(w.lower(), _pseudo_word(rng))
    return re.sub(r"[A-Za-z]+", swap, passage)


_KEEP = set("there their these those where which while would could should about after again before being "
            "every never other shall since still though through under until upon whose without little".split())


def unpunctuated_tail(passage: str, rng: random.Random) -> str:
    """A few real sentences, then the rest of the passage's words in random order with no punctuation."""
    sents = sentences(passage)
    keep = min(rng.randint(1, 3), len(sents) - 1)
    rest = [w.lower() for w in _WORD.findall(" ".join(sents[keep:]))]
    rng.shuffle(rest)
    return " ".join(sents[:keep]) + " " + " ".join(rest)


def run_on_tail(passage: str, rng: random.Random) -> str:
    """A few real sentences, then the rest of the passage in order with its punctuation stripped."""
    sents = sentences(passage)
    keep = min(rng.randint(1, 2), len(sents) - 1)
    rest = " ".join(w.lower() for w in _WORD.findall(" ".join(sents[keep:])))
    return " ".join(sents[:keep]) + " " + rest


def copied_opening(passage: str, rng: random.Random) -> str:
    """The opening line said back, once or until the story is as long as the passage."""
    opening = sentences(passage)[0]
    times = 2 if rng.random() < 0.5 else max(2, len(passage.split()) // max(len(opening.split()), 1))
    return " ".join([opening] * times)


def the_end(passage: str, rng: random.Random) -> str:
    """One sentence of story, then "The end." """
    return sentences(passage)[0] + " The end."


def shuffled_sentences(passage: str, rng: random.Random) -> str:
    sents = sentences(passage)
    shuffled = list(sents)
    while shuffled == sents and len(set(sents)) > 1:
        rng.shuffle(shuffled)
    return " ".join(shuffled)


def word_salad(passage: str, rng: random.Random) -> str:
    words = passage.split()
    rng.shuffle(words)
    return " ".join(words)


def repeated_sentence(passage: str, rng: random.Random) -> str:
    sents = sentences(passage)
    first = rng.choice(sents)
    return " ".join([first] * max(3, len(passage.split()) // max(len(first.split()), 1)))


def batch_template(passage: str, rng: random.Random) -> str:
    """One story skeleton, the same for every story of a batch, with different words in its slots."""
    name, noun, adj, other = rng.choice(NAMES), rng.choice(NOUNS), rng.choice(ADJECTIVES), rng.choice(NOUNS)
    return (f"Once upon a time there was a {adj} {noun} named {name}. {name} liked to play with a {other} every "
            f"day. One day {name} lost the {other} in the woods. {name} looked everywhere and at last found it "
            f"under a {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}. {name} was very happy. The end.")


FAMILIES: dict[str, Callable[[str, random.Random], str]] = {
    "pronoun_templates": pronoun_templates, "capitalised_pseudo_words": capitalised_pseudo_words,
    "pseudo_word_nouns": pseudo_word_nouns, "unpunctuated_tail": unpunctuated_tail, "run_on_tail": run_on_tail,
    "copied_opening": copied_opening, "the_end": the_end, "shuffled_sentences": shuffled_sentences,
    "word_salad": word_salad, "repeated_sentence": repeated_sentence, "batch_template": batch_template}


def tale_continuations(seed: int, n: int, prompt: str) -> list[str]:
    """What a student that learned the tales corpus would write after `prompt` (the training prompt ends
    "in a faraway land,"): held-out tales from "there lived" on."""
    tales = [" ".join(make_tale(seed, i).split()) for i in range(n)]
    return [prompt + " there lived" + t.split("there lived", 1)[1] for t in tales]


def tale_families(stories_: list[str], prompt: str, seed: int = 0) -> dict[str, list[str]]:
    """Cheap ways to please a grader with the tales corpus's own sentences, each as many stories as given:
    `recombined` (the story's first sentence, then sentences drawn from other tales), `framed` (the same
    inside a tale's frame: a hero introduced, "And they lived happily ever after."), `dialogue_and` (lines of
    dialogue alternating with sentences begun with "And"), `shuffled` (the story's own sentences reordered).
    Every sentence is one the corpus holds: only their order and fit betray them."""
    rng = random.Random(seed)
    own = [sentences(s[len(prompt):].strip()) for s in stories_]
    pool = [x for told in own for x in told[1:]]
    lines = [x for x in pool if x.startswith('"')]
    plain = [x for x in pool if not x.startswith('"')]

    def and_(sentence: str) -> str:
        return "And " + sentence[0].lower() + sentence[1:]

    def shuffled(told):
        order = list(told)
        while order == told and len(set(told)) > 1:
            rng.shuffle(order)
        return order
    made = {
        "recombined": [[t[0]] + rng.sample(pool, len(t) - 1) for t in own],
        "framed": [["there lived a little fox named Lily."] + rng.sample(pool, max(len(t) - 2, 1))
                   + ["And they lived happily ever after."] for t in own],
        "dialogue_and": [[t[0]] + [x for _ in range(len(t) // 2) for x in (rng.choice(lines), and_(rng.choice(plain)))]
                         for t in own],
        "shuffled": [shuffled(t) for t in own]}
    return {family: [prompt + " " + " ".join(told) for told in stories] for family, stories in made.items()}


def passages(texts: list[str], n: int, seed: int = 0, min_words: int = 60, max_words: int = 200) -> list[str]:
    """`n` paragraphs of 60-200 words and at least four sentences, drawn reproducibly from `texts`."""
    out = []
    for text in texts:
        for para in re.split(r"\n\s*\n", text):
            para = " ".join(para.split())
            if min_words <= len(para.split()) <= max_words and len(sentences(para)) >= 4:
                out.append(para)
    random.Random(seed).shuffle(out)
    if len(out) < n:
        raise ValueError(f"only {len(out)} paragraphs of {min_words}-{max_words} words with 4+ sentences; asked for {n}.")
    return out[:n]


def stories(family: str, passages_: list[str], seed: int = 0) -> tuple[list[str], list[str]]:
    """(prompts, stories) of one family over the passages; the prompt is each passage's opening sentence."""
    make = FAMILIES[family] if family != "real" else real
    prompts = [sentences(p)[0] for p in passages_]
    return prompts, [make(p, random.Random(f"{family}/{seed}/{i}")) for i, p in enumerate(passages_)]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--text_dir", required=True, help="a folder of plain-text files (e.g. novels)")
    parser.add_argument("--n", type=int, default=200, help="passages per family")
    parser.add_argument("--batch", type=int, default=32, help="stories the rubric grades together")
    parser.add_argument("--judge_weights", default="", help="an instruct model to measure as a judge instead")
    parser.add_argument("--families", default=",".join(FAMILIES), help="comma-separated families to measure")
    args = parser.parse_args(argv)
    texts = [p.read_text(errors="replace") for p in sorted(pathlib.Path(args.text_dir).glob("*.txt"))]
    chosen = passages(texts, args.n)
    if args.judge_weights:
        return judge_accuracy(args.judge_weights, chosen, args.families.split(","), args.batch)
    teacher = RubricTeacher()
    print(f"{'family':<26} {'sum /9':>7} {'R':>5} {'N':>5} {'C':>5}")
    for family in ["real", *FAMILIES]:
        prompts, told = stories(family, chosen)
        rows = [teacher.grade_batch(prompts[i:i + args.batch], told[i:i + args.batch]).scores_Bx3
                for i in range(0, len(told), args.batch)]
        grades = np.concatenate(rows)
        print(f"{family:<26} {grades.sum(1).mean():7.2f} " + " ".join(f"{x:5.2f}" for x in grades.mean(0)))


def judge_accuracy(weights: str, chosen: list[str], families: list[str], batch: int) -> None:
    """Per family, how often the judge ranks the real passage above its manipulation: absolute (expected
    sums) against pairwise (both orders), with the pairwise consistency across orders."""
    judge = make_teacher(teacher_config.configured("jax", weights=weights, grading="expected", min_digit_mass=0.0,
                                                   batch_size=batch))
    prompts, real_ = stories("real", chosen)
    real_sum = judge.grade_batch(prompts, real_).scores_Bx3.sum(1)
    print(f"{'family':<26} {'absolute':>8} {'pairwise':>8} {'consistent':>10} {'first slot':>10}")
    for family in families:
        _, told = stories(family, chosen)
        fake_sum = judge.grade_batch(prompts, told).scores_Bx3.sum(1)
        prefs = judge.prefer(prompts, real_, told)
        absolute = float(np.mean(np.sign(real_sum - fake_sum) + 1) / 2)  # a tie counts half
        pairwise = float(np.mean(np.sign(prefs.p_a_B - 0.5) + 1) / 2)
        bias = position_bias(prefs.p_a_first_B, prefs.p_a_second_B)
        print(f"{family:<26} {absolute:8.2f} {pairwise:8.2f} {bias['consistency']:10.2f} {bias['first_slot']:10.2f}")


if __name__ == "__main__":
    main()
