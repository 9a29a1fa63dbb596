"""A seeded procedural generator of simple children's stories (synthetic data).

This is the embedded offline corpus: it lets the quickstart run on a machine
with no download and no shared data. It is *synthetic* text written by rules
we wrote, not a real corpus; use `text_files`, `tinystories` or `babylm_*` for
results anyone should cite.

Each tale has the arc the teacher rubric looks for: a hero in a place, a goal,
a problem, a helper, a turn and a resolution, with some dialogue. Every choice
is drawn from `numpy.random.default_rng([seed, index])`, so tale `index` is
the same on every machine and the corpus can be regenerated lazily.
"""

from __future__ import annotations

import numpy as np

HEROES = [
    ("a little fox", "she"), ("a brave mouse", "he"), ("a tiny dragon", "she"), ("a curious rabbit", "he"),
    ("a young girl", "she"), ("a small boy", "he"), ("an old turtle", "he"), ("a shy owl", "she"),
    ("a clever cat", "she"), ("a kind bear", "he"), ("a lost duckling", "she"), ("a playful puppy", "he"),
    ("a gentle giant", "he"), ("a sleepy hedgehog", "she"), ("a tiny robot", "it"), ("a proud peacock", "he"),
    ("a little princess", "she"), ("a young knight", "he"), ("a silly goose", "she"), ("a wise frog", "he"),
]
NAMES = ["Lily", "Tom", "Mia", "Ben", "Pip", "Rosa", "Max", "Luna", "Finn", "Ada", "Sam", "Nora", "Leo",
         "Ivy", "Otto", "Zoe", "Kai", "Bella", "Jack", "Tilly", "Milo", "Ruby", "Oscar", "Hazel"]
PLACES = ["in a quiet village by the sea", "in a deep green forest", "in a castle on a hill",
          "in a busy little town", "in a garden full of flowers", "on a snowy mountain", "on a farm near the river",
          "in a cave behind a waterfall", "in a sunny meadow", "on an island far away", "in a tall old tree",
          "in a city of bright lights"]
GOALS = [("find the golden key", "the golden key"), ("bake a cake for a friend", "the cake"),
         ("reach the top of the hill", "the top of the hill"), ("build a boat", "the boat"),
         ("find a lost kite", "the kite"), ("plant a magic seed", "the magic seed"),
         ("learn to fly", "the sky"), ("win the big race", "the race"), ("catch a falling star", "the star"),
         ("bring water to the dry flowers", "the flowers"), ("make a new friend", "a new friend"),
         ("find the way home", "home")]
PROBLEMS = ["a big storm came and blew everything away", "the path was blocked by a huge rock",
            "a grumpy troll stood in the way", "it was too dark to see anything",
            "the bridge over the river was broken", "a cold wind made everyone shiver",
            "the map was torn in two", "a river had flooded the road", "nobody believed it could be done",
            "the night came too quickly", "a heavy fog covered the land", "the wheel of the cart broke"]
HELPERS = [("a wise old owl", "she"), ("a friendly squirrel", "he"), ("a kind grandmother", "she"),
           ("a talking tree", "it"), ("a little bird", "she"), ("a strong horse", "he"),
           ("a funny monkey", "he"), ("a helpful bee", "she"), ("a gentle cow", "she"), ("a clever crow", "he")]
TURNS = ["had an idea", "remembered an old song", "found a hidden door", "saw a light in the distance",
         "heard a soft voice", "noticed a trail of shiny stones", "tried one more time",
         "looked at the problem in a new way", "asked for help", "shared what little food there was"]
FEELINGS = ["happy", "proud", "tired but glad", "full of joy", "warm inside", "thankful", "excited", "calm"]
OPENINGS = ["Once upon a time", "Long ago", "One sunny morning", "One cold winter night", "A long time ago",
            "Once, not so long ago", "On a windy autumn day", "Early one spring morning"]
LESSONS = ["Friends make hard things easy.", "It is good to ask for help.", "Never give up.",
           "Kindness always comes back.", "Being brave means trying even when you are scared.",
           "Sharing makes everyone happy.", "Listening is a kind of magic."]
SAYS = ["said", "asked", "cried", "whispered", "shouted", "laughed"]
DETAILS = ["The sun was warm and the birds were singing.", "The air smelled of rain and pine.",
           "Every day looked the same, and that was a little boring.", "The stars were bright above.",
           "There was always a lot of work to do.", "Everyone there was kind but very busy."]
ENDINGS = ["From that day on, {name} was never afraid again.", "And they lived happily ever after.",
           "That night, {name} slept with a big smile.", "The whole village sang songs about {name} for years.",
           "{Name} and {helper} stayed best friends forever.", "And every spring, {name} tells this story again."]

_OBJ = {"she": "her", "he": "him", "it": "it"}
_POSS = {"she": "her", "he": "his", "it": "its"}


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def make_tale(seed: int, index: int) -> str:
    """Returns tale number `index` of the corpus drawn with `seed`."""
    rng = np.random.default_rng([seed, index])
    pick = lambda seq: seq[rng.integers(len(seq))]
    hero, pron = pick(HEROES)
    name = pick(NAMES)
    helper, hpron = pick(HELPERS)
    goal, goal_obj = pick(GOALS)
    problem = pick(PROBLEMS)
    place = pick(PLACES)
    P, p_obj, p_poss = _cap(pron), _OBJ[pron], _POSS[pron]
    feeling = pick(FEELINGS)

    lines = [f"{pick(OPENINGS)}, {place}, there lived {hero} named {name}."]
    if rng.random() < 0.6:
        lines.append(pick(DETAILS))
    lines.append(f"More than anything, {name} wanted to {goal}.")
    if rng.random() < 0.5:
        lines.append(f'"One day I will {goal}," {name} {pick(SAYS)}.')
    lines.append(f"So one morning, {pron} set off.")
    lines.append(f"But soon {problem}.")
    lines.append(f"{name} felt {pick(['sad', 'scared', 'worried', 'alone', 'angry'])} and sat down.")
    lines.append(f"Then {helper} came by.")
    lines.append(f'"Why are you so sad?" {pick(SAYS)} the {helper.split()[-1]}.')
    lines.append(f'"I want to {goal}, but {problem}," {name} {pick(SAYS)}.')
    if rng.random() < 0.5:
        lines.append(f'"Do not worry. We can do it together," said the {helper.split()[-1]}.')
    else:
        lines.append(f'The {helper.split()[-1]} thought for a while and then smiled.')
    lines.append(f"Then {name} {pick(TURNS)}.")
    if rng.random() < 0.5:
        lines.append(f"{P} and the {helper.split()[-1]} worked hard all day.")
    lines.append(f"At last, {name} reached {goal_obj}." if rng.random() < 0.5
                 else f"In the end, {pron} managed to {goal}.")
    lines.append(f"{name} felt {feeling}, and {pron} thanked the {helper.split()[-1]} with all {p_poss} heart.")
    if rng.random() < 0.5:
        lines.append(f'"Thank you for helping {p_obj}," said {name}\'s mother when {pron} came home.'
                     if pron != "it" else f'"Thank you," said {name}.')
    lines.append(pick(ENDINGS).format(name=name, Name=name, helper=helper.replace("a ", "the ", 1)))
    if rng.random() < 0.4:
        lines.append(pick(LESSONS))
    # Two paragraphs: the setup, then the journey and the ending.
    cut = 3 + int(rng.integers(0, 2))
    return " ".join(lines[:cut]) + "\n\n" + " ".join(lines[cut:])
