"""Story prompts: the paper's fixed prompt and held-out openings written for storyjax.

The held-out openings are never used for learning; they measure storytelling before and after it.
"""

PAPER_PROMPT = "Let me tell you a long, magical tale. Once upon a time, in a faraway land,"

HELDOUT_OPENINGS = (
    "Once upon a time, a little fox found a key under the snow.",
    "Long ago, in a town where it never stopped raining, there lived a girl who loved the sun.",
    "The old lighthouse keeper had not spoken to anyone for ten years, until one stormy night",
    "Tom woke up and saw that his shoes had walked away without him.",
    "In the middle of the forest stood a door that belonged to no house.",
    "Every morning, the baker left one loaf of bread on the bench by the river.",
    "The dragon was afraid of the dark, which was a problem, because it lived in a cave.",
    "When the first snow fell, Mia's grandmother told her a secret.",
    "There was once a tiny boat that wanted to see the whole sea.",
    "The robot in the toy shop window watched the children walk past every day.",
    "On the day the circus came to town, the elephant disappeared.",
    "Ben had a map, a sandwich, and a very small dog named Pickle.",
    "Nobody in the village knew where the singing came from at night.",
    "The moon fell into the pond, and the frogs did not know what to do.",
    "Lily planted a seed, and the next morning a ladder grew out of the ground.",
    "A rabbit, a turtle and a crow decided to build a house together.",
    "The king had everything he wanted, except a friend.",
    "Under the bed lived a monster who was scared of children.",
    "Sam found a letter in a bottle, and it was addressed to him.",
    "The wind stole Rosa's kite and carried it over the mountains.",
    "Once there was a clock that ran backwards.",
    "The cat and the mouse had been enemies for years, until the flood came.",
    "Far away, on an island shaped like a shoe, lived a family of giants.",
    "The new girl at school never took off her yellow raincoat.",
    "Grandpa said the old tree in the garden could talk, but only on Tuesdays.",
    "A star fell from the sky and landed in Max's backyard.",
    "The princess did not want to marry a prince; she wanted to be a sailor.",
    "Every book in the library went quiet when the strange boy walked in.",
    "The bees were angry, and the whole garden knew why.",
    "It was the coldest winter anyone could remember, and the wolves came down from the hills.",
    "Pip the mouse wanted to be the fastest runner in the meadow.",
    "Behind the waterfall there was a cave, and in the cave there was a light.",
    "The snowman wished, more than anything, to see the summer.",
    "Nora's shadow started doing things she had not done.",
    "One day, all the colours ran out of the town.",
    "The owl had a question that no one in the forest could answer.",
    "A little train climbed the hill every day, and every day it was late.",
    "When Finn opened the box, a very small knight stepped out.",
    "The river was drying up, and the fish held a meeting.",
    "At the bottom of the sea, an octopus was writing a letter.",
    "The witch next door was not scary at all; she was just very tired.",
    "Ada built a machine that could turn rain into music.",
    "The last leaf on the tree did not want to fall.",
    "A bear knocked on the door of the little house and asked for honey.",
    "The twins found a path in the woods that was not there yesterday.",
    "Every night, the toys held a secret meeting in the attic.",
    "The giant's garden was full of flowers as big as houses.",
    "Leo was the only one who could hear what the horses were saying.",
    "The scarecrow was lonely, so it asked the crows to stay.",
    "Once upon a time, a puddle dreamed of becoming an ocean.",
    "The little cloud could not rain, no matter how hard it tried.",
    "Zoe's umbrella took her on a journey high above the city.",
)


# Openings in the tales corpus's own words, each ending in a comma as the training prompt does ("... in a
# faraway land,"), so a student that learned the corpus reads them as it reads its training prompt; none is
# a training prompt. Chosen once, reproducibly, from the tales generator's own lists (seed 2026): the first
# 26 an opening phrase and a place, the rest with a hero, a name and a goal after them.
CORPUS_OPENINGS = (
    "On a windy autumn day, in a castle on a hill,",
    "Once upon a time, in a cave behind a waterfall,",
    "One sunny morning, on a snowy mountain,",
    "Once upon a time, in a garden full of flowers,",
    "Once, not so long ago, in a garden full of flowers,",
    "On a windy autumn day, on an island far away,",
    "Once, not so long ago, in a tall old tree,",
    "Once, not so long ago, in a castle on a hill,",
    "On a windy autumn day, in a cave behind a waterfall,",
    "Once upon a time, in a busy little town,",
    "Long ago, in a city of bright lights,",
    "Once, not so long ago, in a city of bright lights,",
    "One sunny morning, in a cave behind a waterfall,",
    "A long time ago, on an island far away,",
    "Once upon a time, on a farm near the river,",
    "Once, not so long ago, on an island far away,",
    "Once, not so long ago, on a snowy mountain,",
    "One cold winter night, in a garden full of flowers,",
    "Long ago, in a busy little town,",
    "Long ago, in a castle on a hill,",
    "On a windy autumn day, on a farm near the river,",
    "Once upon a time, on a snowy mountain,",
    "On a windy autumn day, in a quiet village by the sea,",
    "One cold winter night, on a snowy mountain,",
    "Early one spring morning, in a garden full of flowers,",
    "One cold winter night, in a cave behind a waterfall,",
    "One sunny morning, on a snowy mountain, a sleepy hedgehog named Luna wanted to find the way home,",
    "Long ago, in a city of bright lights, a young knight named Oscar wanted to bring water to the dry flowers,",
    "A long time ago, in a cave behind a waterfall, a young girl named Finn wanted to plant a magic seed,",
    "Early one spring morning, on an island far away, a playful puppy named Otto wanted to plant a magic seed,",
    "One cold winter night, in a tall old tree, a little fox named Luna wanted to find a lost kite,",
    "Once, not so long ago, in a garden full of flowers, an old turtle named Tom wanted to build a boat,",
    "Once upon a time, in a sunny meadow, a clever cat named Rosa wanted to learn to fly,",
    "One cold winter night, on a snowy mountain, a playful puppy named Zoe wanted to reach the top of the hill,",
    "Long ago, in a sunny meadow, a wise frog named Ivy wanted to plant a magic seed,",
    "A long time ago, in a quiet village by the sea, a shy owl named Finn wanted to plant a magic seed,",
    "Once, not so long ago, on a snowy mountain, a young knight named Nora wanted to find the golden key,",
    "Once, not so long ago, on an island far away, a playful puppy named Oscar wanted to find a lost kite,",
    "On a windy autumn day, in a quiet village by the sea, a little fox named Tilly wanted to make a new friend,",
    "A long time ago, on an island far away, an old turtle named Bella wanted to plant a magic seed,",
    "One sunny morning, in a deep green forest, a curious rabbit named Ruby wanted to plant a magic seed,",
    "Early one spring morning, in a garden full of flowers, a brave mouse named Max wanted to find a lost kite,",
    "Once, not so long ago, in a sunny meadow, a tiny robot named Luna wanted to find a lost kite,",
    "A long time ago, in a cave behind a waterfall, a clever cat named Pip wanted to bring water to the dry "
    "flowers,",
    "A long time ago, in a city of bright lights, a silly goose named Ruby wanted to find the way home,",
    "A long time ago, in a busy little town, a curious rabbit named Mia wanted to find the way home,",
    "One sunny morning, in a quiet village by the sea, a little fox named Luna wanted to find the way home,",
    "One sunny morning, in a deep green forest, a sleepy hedgehog named Tom wanted to plant a magic seed,",
    "Once upon a time, in a deep green forest, a shy owl named Lily wanted to make a new friend,",
    "A long time ago, in a city of bright lights, a kind bear named Ivy wanted to win the big race,",
    "One cold winter night, on a farm near the river, a playful puppy named Ruby wanted to build a boat,",
    "Early one spring morning, in a castle on a hill, a curious rabbit named Max wanted to find the way home,",
)
OPENING_SETS = ("heldout", "corpus", "training")


def story_openings(kind: str, n: int, exclude=(), training_prompt: str = "") -> list[str]:
    """The openings an evaluation's stories continue: `heldout` (our own, written for storyjax: an
    out-of-distribution probe for a student of the tales corpus), `corpus` (CORPUS_OPENINGS, in the tales
    corpus's words and punctuated as the training prompt), or `training` (the training prompt itself, as the
    paper evaluated: n must be 1, each story its own sampling key)."""
    if kind == "heldout":
        return heldout_openings(n, exclude)
    if kind == "corpus":
        skip = {" ".join(p.split()) for p in exclude}
        openings = [o for o in CORPUS_OPENINGS if " ".join(o.split()) not in skip]
        if n > len(openings):
            raise ValueError(f"{n} corpus openings asked for; there are {len(openings)}: ask for at most that many.")
        return openings[:n]
    if kind == "training":
        if n != 1 or not training_prompt:
            raise ValueError("stories.openings=training continues the training prompt alone: set "
                             "stories.num_openings=1, stories.prompt to the training prompt, and the story count "
                             "with stories.per_opening (the paper-style evaluation: 256 or more).")
        return [training_prompt]
    raise ValueError(f"stories.openings={kind!r}: choose one of {OPENING_SETS}.")


def heldout_openings(n: int, exclude=()) -> list[str]:
    """The first `n` held-out openings that are not a training prompt (`exclude`): a student is never
    measured on an opening it learned from."""
    skip = {" ".join(p.split()) for p in exclude}
    openings = [o for o in HELDOUT_OPENINGS if " ".join(o.split()) not in skip]
    if n > len(openings):
        raise ValueError(f"{n} held-out openings asked for; there are {len(openings)} besides the training "
                         f"prompt(s): ask for at most {len(openings)} (stories.num_openings or heldout.num_openings).")
    return openings[:n]
