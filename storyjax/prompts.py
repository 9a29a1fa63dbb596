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


def heldout_openings(n: int, exclude=()) -> list[str]:
    """The first `n` held-out openings that are not a training prompt (`exclude`): a student is never
    measured on an opening it learned from."""
    skip = {" ".join(p.split()) for p in exclude}
    openings = [o for o in HELDOUT_OPENINGS if " ".join(o.split()) not in skip]
    if n > len(openings):
        raise ValueError(f"{n} held-out openings asked for; there are {len(openings)} besides the training "
                         f"prompt(s): ask for at most {len(openings)} (stories.num_openings or heldout.num_openings).")
    return openings[:n]
