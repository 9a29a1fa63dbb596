"""`tales`: an exact instrument (and teacher) for stories in the world of the embedded tales corpus.

The tales corpus (storyjax.data.tales_generator) is written by a grammar: a fixed arc of sentence templates
(opening, goal, setting off, problem, helper, dialogue, turn, resolution, thanks, ending) whose slots are
filled from fixed lists, with one hero, one helper and one goal per tale. A student pretrained on it can be
checked against that grammar exactly, which no rubric of surface features and no small LLM can do:

  parsed     — the share of the continuation's sentences that some template of the grammar produces;
  order      — the share of consecutive template sentences that keep the arc's order (no step back);
  consistent — one hero name throughout, the hero's own pronoun, one helper, and one goal from its first
               mention to its resolution (the share of those checks that hold);
  arc        — how many of the arc's landmarks (hero, goal, problem, helper, turn, resolution, ending) the
               continuation reaches.

A story cut off by the student's token cap ends in a fragment: the fragment is left out of `parsed` (a story
stopped mid-sentence is not ungrammatical). As a teacher (`teacher.name=tales`) it grades readability from
`parsed`, coherence from `order` and `consistent`, creativity (here: how much of a tale is told) from `arc`:
it is known to be right about this world, so an experiment's positive control learns from it.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np

from storyjax.data import tales_generator as G
from storyjax.teachers.base import Grades, Preferences, Teacher


def _version() -> str:
    """A short hash of the grammar (this module and the generator whose templates and lists it reads)."""
    digest = hashlib.sha256(Path(__file__).read_bytes() + Path(G.__file__).read_bytes())
    return digest.hexdigest()[:12]


VERSION = _version()


def _alt(options) -> str:
    return "(?:" + "|".join(re.escape(o) for o in sorted(options, key=len, reverse=True)) + ")"


_NAME = f"(?P<name>{_alt(G.NAMES)})"
_HERO = f"(?P<hero>{_alt(h for h, _ in G.HEROES)})"
_HELPER = f"(?P<helper>{_alt(h for h, _ in G.HELPERS)})"
_HELPER_NOUN = f"(?P<helper_noun>{_alt({h.split()[-1] for h, _ in G.HELPERS})})"
_GOAL = f"(?P<goal>{_alt(g for g, _ in G.GOALS)})"
_GOAL_OBJ = f"(?P<goal_obj>{_alt(o for _, o in G.GOALS)})"
_PROBLEM = f"(?P<problem>{_alt(G.PROBLEMS)})"
_PRON = "(?P<pron>she|he|it)"
_PRON_CAP = "(?P<pron>She|He|It)"
_SAYS = _alt(G.SAYS)
_END_HELPER = f"the (?P<end_helper>{_alt(h.split(' ', 1)[1] for h, _ in G.HELPERS)})"
_ENDINGS = [re.escape(e).replace(re.escape("{name}"), _NAME).replace(re.escape("{Name}"), _NAME)
            .replace(re.escape("{helper}"), _END_HELPER) for e in G.ENDINGS]

# (arc position, landmark or "", regex): the generator's sentences in the order it writes them.
TEMPLATES = [
    (0, "hero", f"(?:{_alt(G.OPENINGS)}, {_alt(G.PLACES)}, )?there lived {_HERO} named {_NAME}\\."),
    (1, "", _alt(G.DETAILS)),
    (2, "goal", f"More than anything, {_NAME} wanted to {_GOAL}\\."),
    (3, "", f'"One day I will {_GOAL}," {_NAME} {_SAYS}\\.'),
    (4, "", f"So one morning, {_PRON} set off\\."),
    (5, "problem", f"But soon {_PROBLEM}\\."),
    (6, "", f"{_NAME} felt (?:sad|scared|worried|alone|angry) and sat down\\."),
    (7, "helper", f"Then {_HELPER} came by\\."),
    (8, "", f'"Why are you so sad\\?" {_SAYS} the {_HELPER_NOUN}\\.'),
    (9, "", f'"I want to {_GOAL}, but {_PROBLEM}," {_NAME} {_SAYS}\\.'),
    (10, "", f'"Do not worry\\. We can do it together," said the {_HELPER_NOUN}\\.'),
    (10, "", f"The {_HELPER_NOUN} thought for a while and then smiled\\."),
    (11, "turn", f"Then {_NAME} {_alt(G.TURNS)}\\."),
    (12, "", f"{_PRON_CAP} and the {_HELPER_NOUN} worked hard all day\\."),
    (13, "resolution", f"At last, {_NAME} reached {_GOAL_OBJ}\\."),
    (13, "resolution", f"In the end, {_PRON} managed to {_GOAL}\\."),
    (14, "", f"{_NAME} felt {_alt(G.FEELINGS)}, and {_PRON} thanked the {_HELPER_NOUN} with all "
             f"(?P<poss>her|his|its) heart\\."),
    (15, "", f'"Thank you for helping (?P<obj>her|him|it)," said {_NAME}\'s mother when {_PRON} came home\\.'),
    (15, "", f'"Thank you," said {_NAME}\\.'),
    *[(16, "ending", e) for e in _ENDINGS],
    (17, "", _alt(G.LESSONS)),
]
_COMPILED = [(pos, mark, re.compile(rx)) for pos, mark, rx in TEMPLATES]
LANDMARKS = ("hero", "goal", "problem", "helper", "turn", "resolution", "ending")
_HERO_PRON = dict(G.HEROES)
_GOAL_OF_OBJ = {o: g for g, o in G.GOALS}
_FORMS = {"she": ("she", "her", "her"), "he": ("he", "him", "his"), "it": ("it", "it", "its")}
_SENTENCE_END = re.compile(r'[.!?]"?(?=\s|$)')


class Parse(NamedTuple):
    """A continuation read against the tales grammar."""
    parsed: float      # share of its complete sentences that a template produces (NaN with none)
    order: float       # share of consecutive template sentences in the arc's order (1 with fewer than two)
    consistent: float  # share of the hero/pronoun/helper/goal checks that hold (1 with none to make)
    arc: int           # landmarks reached, of len(LANDMARKS)
    sentences: int     # complete sentences read (matched or not); a trailing fragment is not one


def _matches(text: str) -> tuple[list, int]:
    """[(arc position, landmark, captures)] of the template sentences in `text`, and how many complete
    sentences it holds; at each point the longest template match wins, else the text up to the next
    sentence end is one sentence no template produces."""
    found, sentences, at = [], 0, 0
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        if at >= len(text):
            return found, sentences
        best = max(((m.end(), pos, mark, m) for pos, mark, rx in _COMPILED if (m := rx.match(text, at))),
                   key=lambda x: x[0], default=None)
        if best is not None:
            end, pos, mark, m = best
            found.append((pos, mark, {k: v for k, v in m.groupdict().items() if v}))
            sentences, at = sentences + 1, end
            continue
        stop = _SENTENCE_END.search(text, at)
        if stop is None:  # a fragment at the end: the token cap, not a sentence
            return found, sentences
        sentences, at = sentences + 1, stop.end()


def _consistency(found: list, hero_pron: Optional[str]) -> float:
    """The share of checks that hold: every name is the first name, every helper noun the first helper's,
    every goal the first goal (a resolution's object, its goal's), the hero's pronouns its own."""
    checks = []
    first = {}
    for _, _, caps in found:
        helper = caps.get("helper") or caps.get("helper_noun") or caps.get("end_helper")
        goal = caps.get("goal") or _GOAL_OF_OBJ.get(caps.get("goal_obj"))
        for key, value in (("name", caps.get("name")), ("helper", helper and helper.split()[-1]), ("goal", goal)):
            if value:
                checks.append(first.setdefault(key, value) == value)
        pron = hero_pron or first.setdefault("pron", caps.get("pron", "").lower() or None)
        if pron in _FORMS:
            checks += [caps[k].lower() == form for k, form in zip(("pron", "obj", "poss"), _FORMS[pron]) if k in caps]
    return float(np.mean(checks)) if checks else 1.0


def read(prompt: str, story: str) -> Parse:
    """The continuation of `story` after `prompt`, read against the grammar."""
    text = story[len(prompt):] if story.startswith(prompt) else story
    found, sentences = _matches(text)
    positions = [pos for pos, _, _ in found]
    steps = list(zip(positions, positions[1:]))
    hero = next((caps["hero"] for _, _, caps in found if "hero" in caps), None)
    return Parse(parsed=len(found) / sentences if sentences else float("nan"),
                 order=float(np.mean([b > a for a, b in steps])) if steps else 1.0,
                 consistent=_consistency(found, _HERO_PRON.get(hero)),
                 arc=len({mark for _, mark, _ in found if mark}), sentences=sentences)


def _level(x: float, cuts: tuple) -> int:
    return int(sum(x >= c for c in cuts))


def grade_story(prompt: str, story: str) -> tuple[int, int, int]:
    """(readability, coherence, creativity) on 0-3 from the parse; no complete sentence is no story (0 0 0)."""
    p = read(prompt, story)
    if not p.sentences:
        return 0, 0, 0
    readability = _level(p.parsed, (0.5, 0.8, 0.95))
    coherence = min(readability, _level(min(p.order, p.consistent), (0.5, 0.8, 1.0)) if p.sentences >= 2 else 0)
    creativity = min(readability, _level(p.arc, (2, 3, 5)))
    return readability, coherence, creativity


class TalesTeacher(Teacher):
    """The tales grammar as a teacher: deterministic, offline, each story graded on its own."""

    name = "tales"

    def grade_batch(self, prompts: list[str], stories: list[str]) -> Grades:
        scores = np.asarray([grade_story(p, s) for p, s in zip(prompts, stories)], np.float32).reshape(-1, 3)
        return Grades(scores, [" ".join(str(int(x)) for x in row) for row in scores])

    def prefer(self, prompts: list[str], stories_a: list[str], stories_b: list[str]) -> Preferences:
        """The story with the larger sum of grades (a tie 1/2); no position to be biased by."""
        sum_a = np.asarray([sum(grade_story(p, s)) for p, s in zip(prompts, stories_a)], np.float64)
        sum_b = np.asarray([sum(grade_story(p, s)) for p, s in zip(prompts, stories_b)], np.float64)
        p_a = (np.sign(sum_a - sum_b) + 1) / 2
        return Preferences(p_a, p_a, p_a)
