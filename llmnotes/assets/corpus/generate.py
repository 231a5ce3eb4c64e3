"""Generate ``tinytales``: the small story corpus that ships with llmnotes.

Nothing can be downloaded on the machines that build this project, so the corpus is written by
this script: simple English short stories in the spirit of TinyStories (Eldan & Li, 2023,
"TinyStories: How Small Can Language Models Be and Still Speak Coherent English?",
arXiv:2305.07759), whose idea is that a *narrow* but *coherent* language lets a tiny model learn
grammar, names that stay consistent, and cause and effect.

Every story follows a plot arc -- a setting, a wish, a problem, one or two attempts, a
resolution, a feeling and sometimes a moral -- picked from ten arcs (a lost thing, a thing stuck
up high, a broken thing, a fear, sharing, rain spoiling a plan, helping someone, a surprise, a
new skill, getting lost). Each beat has several sentence templates, and the slots are filled
from lists of names, animals, places, objects, weather and feelings, so stories vary while
staying on-topic. The generator is deterministic: the same seed writes byte-identical files.

    python llmnotes/assets/corpus/generate.py            # rewrites train.txt and val.txt here

The shipped models were pretrained on a larger *mix*: many more stories, some preceded by the
words they must use, plus reading-comprehension and few-shot records (``records.py`` says what
each kind teaches). It is generated on demand into a cache folder, never committed:

    python llmnotes/assets/corpus/generate.py --mix --n-stories 30000 \
        --out ~/.cache/llmnotes/tinytales-mix-30000             # ~29 MB, ~8M tokens

Stories are separated by ``<|endoftext|>`` lines; the split is by story, 95% / 5%.
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass
from pathlib import Path

from llmnotes.utils import atomic_write_bytes

EOT = "<|endoftext|>"

GIRLS = ["Lily", "Mia", "Emma", "Sara", "Anna", "Lucy", "Zoe", "Ella", "Ruby", "Maya", "Nora",
         "Amy", "Rosa", "Ivy", "Hana", "Leah", "Chloe", "Grace", "Tara", "Nina", "Olive", "Jade",
         "Alice", "Daisy", "Kim", "Layla", "Sofia", "Bella", "Mei", "Priya", "Fatima", "Eva",
         "Hannah", "Clara", "Isla", "Poppy", "Greta", "Wendy", "Molly", "Susie", "Lena", "Aisha",
         "Yara", "Maria", "Julia", "Emily", "Kate", "Jenny", "Holly", "Iris", "Violet", "Hazel",
         "Stella", "Luna", "Willow", "Freya", "Amara", "Zara", "Ada", "Nell", "Rita", "Beth"]
BOYS = ["Tom", "Ben", "Max", "Sam", "Leo", "Jack", "Finn", "Tim", "Noah", "Eli", "Omar",
        "Ravi", "Luke", "Adam", "Kai", "Jon", "Milo", "Oscar", "Theo", "Hugo", "Ali", "Dan",
        "Ken", "Pete", "Joe", "Liam", "Ryan", "Toby", "Jamal", "Carlos", "Yuki", "Arlo",
        "Felix", "Jasper", "Rowan", "Mateo", "Ezra", "Henry", "George", "Oliver", "Lucas",
        "Ethan", "Mason", "Owen", "Simon", "Victor", "Marco", "Ivan", "Kofi", "Tariq", "Arjun",
        "Billy", "Charlie", "Danny", "Frank", "Harry", "Isaac", "Jake", "Louis", "Nico", "Rafi"]
ANIMALS = [("rabbit", "Pip", "he"), ("bunny", "Flopsy", "she"), ("bear", "Bruno", "he"),
           ("fox", "Rusty", "he"), ("kitten", "Whiskers", "she"), ("puppy", "Buddy", "he"),
           ("duck", "Dot", "she"), ("mouse", "Squeak", "he"), ("owl", "Hoot", "he"),
           ("frog", "Freddy", "he"), ("turtle", "Shelly", "she"), ("squirrel", "Nutty", "he"),
           ("pig", "Penny", "she"), ("lamb", "Lulu", "she"), ("hedgehog", "Spike", "he"),
           ("deer", "Fawn", "she"), ("bird", "Tweet", "she"), ("cat", "Tiger", "he"),
           ("dog", "Rex", "he"), ("goat", "Billy", "he"), ("chick", "Peep", "she"),
           ("monkey", "Momo", "he"), ("elephant", "Ellie", "she"), ("lion", "Leo", "he"),
           ("cow", "Bella", "she"), ("horse", "Star", "she"), ("bee", "Buzz", "he"),
           ("ladybug", "Lottie", "she"), ("penguin", "Pingu", "he"), ("panda", "Bao", "he"),
           ("giraffe", "Gina", "she"), ("zebra", "Zig", "he"), ("koala", "Kip", "he"),
           ("hippo", "Hattie", "she"), ("raccoon", "Bandit", "he"), ("otter", "Ollie", "he"),
           ("badger", "Bramble", "he"), ("mole", "Molly", "she"), ("seal", "Sammy", "he"),
           ("dolphin", "Dora", "she"), ("beaver", "Benny", "he"), ("swan", "Grace", "she"),
           ("crab", "Pinchy", "he"), ("snail", "Slow", "he"), ("butterfly", "Flutter", "she"),
           ("dragon", "Ember", "she"), ("unicorn", "Sparkle", "she"), ("robin", "Ruby", "she"),
           ("donkey", "Dusty", "he"), ("goose", "Gertie", "she"), ("tiger", "Stripes", "he")]
SIZES = ["little", "small", "tiny", "young", "happy", "curious", "kind", "brave", "shy", "funny",
         "clever", "playful", "sleepy", "cheerful", "gentle", "busy", "silly", "quiet", "friendly",
         "bold", "tired", "hungry", "lively", "careful", "honest", "lonely", "bright", "smart"]
ADULTS = [("Mom", "she"), ("Dad", "he"), ("Grandma", "she"), ("Grandpa", "he"),
          ("Aunt May", "she"), ("Uncle Bob", "he"), ("the teacher", "she"),
          ("the old farmer", "he"), ("the wise owl", "she"), ("big sister Kate", "she"),
          ("big brother Paul", "he"), ("the baker", "he"), ("the kind neighbor", "she"),
          ("the doctor", "she"), ("the fireman", "he"), ("the mailman", "he"),
          ("the gardener", "she"), ("the fisherman", "he"), ("Nana", "she"), ("Papa", "he"),
          ("the librarian", "she"), ("the zookeeper", "he"), ("the park ranger", "she")]
PLACES = [("park", "in the park", "a big oak tree"), ("garden", "in the garden", "the apple tree"),
          ("forest", "in the forest", "a tall pine tree"), ("beach", "at the beach", "a palm tree"),
          ("farm", "on the farm", "the roof of the barn"), ("meadow", "in the meadow", "a tall tree"),
          ("village", "in the village", "the roof of the school"),
          ("hill", "on the hill", "an old tree"), ("yard", "in the yard", "the fence"),
          ("river", "by the river", "a willow tree"), ("lake", "by the lake", "a high branch"),
          ("playground", "at the playground", "the top of the slide"),
          ("zoo", "at the zoo", "a tall tree"), ("town", "in the town", "a lamp post"),
          ("woods", "in the woods", "a thick bush"), ("field", "in the field", "the old windmill"),
          ("pond", "by the pond", "a tall reed"), ("orchard", "in the orchard", "a pear tree"),
          ("market", "at the market", "the top of a tent"), ("island", "on the island", "a coconut tree"),
          ("mountain", "on the mountain", "a rocky ledge"), ("jungle", "in the jungle", "a tall vine"),
          ("library", "at the library", "a high shelf"), ("harbor", "at the harbor", "the mast of a boat"),
          ("castle", "at the castle", "the castle tower"), ("camp", "at the camp", "the top of the tent"),
          ("valley", "in the valley", "a big rock"), ("street", "on the street", "a bus stop roof")]
# (object, adjective choices, how it is played with)
OBJECTS = [("kite", ["red", "blue", "yellow", "big", "striped"], "fly"),
           ("ball", ["red", "bouncy", "green", "big", "shiny"], "kick"),
           ("hat", ["red", "straw", "blue", "funny", "warm"], "wear"),
           ("teddy bear", ["soft", "brown", "old", "fluffy", "little"], "hug"),
           ("toy boat", ["blue", "wooden", "little", "red", "fast"], "sail"),
           ("balloon", ["red", "blue", "pink", "big", "yellow"], "hold"),
           ("key", ["shiny", "gold", "small", "old", "silver"], "play with"),
           ("drum", ["little", "loud", "red", "new", "round"], "play"),
           ("book", ["picture", "new", "big", "old", "blue"], "read"),
           ("doll", ["pretty", "small", "soft", "old", "new"], "hug"),
           ("toy car", ["red", "fast", "little", "green", "shiny"], "race"),
           ("paper plane", ["white", "small", "fast", "folded", "long"], "throw"),
           ("shell", ["pink", "pretty", "smooth", "white", "tiny"], "look at"),
           ("scarf", ["warm", "red", "long", "soft", "striped"], "wear"),
           ("crayon box", ["new", "big", "colorful", "small", "old"], "draw with"),
           ("whistle", ["shiny", "little", "loud", "silver", "red"], "blow"),
           ("ribbon", ["pink", "long", "purple", "shiny", "red"], "wear"),
           ("bucket", ["yellow", "little", "red", "blue", "green"], "fill"),
           ("robot", ["toy", "small", "silver", "funny", "new"], "play with"),
           ("umbrella", ["yellow", "big", "red", "spotted", "green"], "carry"),
           ("yo-yo", ["red", "wooden", "glowing", "little", "purple"], "spin"),
           ("jump rope", ["long", "pink", "striped", "new", "bright"], "skip with"),
           ("puzzle", ["big", "tricky", "wooden", "colorful", "new"], "finish"),
           ("flute", ["little", "silver", "wooden", "shiny", "old"], "play"),
           ("sled", ["red", "fast", "wooden", "long", "old"], "ride"),
           ("wagon", ["red", "little", "squeaky", "old", "green"], "pull"),
           ("lantern", ["glowing", "paper", "small", "golden", "bright"], "carry"),
           ("marble", ["glass", "blue", "shiny", "green", "swirly"], "roll"),
           ("spinning top", ["bright", "wooden", "fast", "striped", "tiny"], "spin"),
           ("sticker book", ["new", "shiny", "thick", "funny", "big"], "fill"),
           ("backpack", ["blue", "heavy", "small", "purple", "new"], "carry"),
           ("bracelet", ["beaded", "pretty", "golden", "tiny", "shiny"], "wear"),
           ("map", ["old", "torn", "secret", "big", "paper"], "read"),
           ("trumpet", ["toy", "golden", "loud", "shiny", "small"], "play"),
           ("pinwheel", ["colorful", "paper", "spinning", "bright", "tiny"], "spin"),
           ("basket", ["woven", "little", "round", "brown", "big"], "carry")]
WEATHER = {
    "sunny": ["The sun was bright and warm.", "It was a sunny day, and the sky was blue.",
              "The sun shone on the grass.", "The sky was clear and the air was warm."],
    "windy": ["The wind was blowing hard.", "It was a windy day, and the leaves danced.",
              "A strong wind made the trees sway.", "The wind whistled through the trees."],
    "cloudy": ["Big gray clouds filled the sky.", "It was a cloudy day.",
               "The clouds were soft and white.", "The sky was gray but it did not rain."],
    "snowy": ["Soft snow covered the ground.", "It was a cold day, and snow was falling.",
              "Everything was white with snow.", "Little snowflakes fell from the sky."],
    "rainy": ["Rain tapped on the windows.", "It was a wet and rainy day.",
              "Drops of rain fell from the gray sky.", "Puddles were everywhere."],
}
TIMES = ["One day", "Once upon a time", "One morning", "One sunny afternoon", "Long ago",
         "One evening", "Last summer", "One Saturday", "One cold winter day", "One spring morning"]
FOODS = ["cookies", "apples", "cherries", "carrots", "sandwiches", "grapes", "berries",
         "muffins", "pancakes", "strawberries", "nuts", "cupcakes", "bananas", "peaches", "plums",
         "pears", "oranges", "cheese", "crackers", "honey cakes", "pies", "biscuits", "pretzels",
         "blueberries", "raisins", "dumplings", "noodles", "tomatoes", "peas", "corn", "waffles",
         "lemons", "melons", "mangoes", "cookies with chocolate chips", "jam tarts", "buns"]
HAPPY = ["happy", "glad", "proud", "excited", "full of joy", "very happy"]
SAD = ["sad", "upset", "worried", "unhappy", "very sad"]
SAY = ["said", "said", "said", "asked", "cried", "shouted", "whispered", "called"]
COLORS = ["red", "blue", "green", "yellow", "purple", "orange", "pink", "white", "black",
          "brown", "gold", "silver", "gray", "golden", "bright red", "deep blue", "pale green"]
FLOWERS = ["daisies", "tulips", "roses", "sunflowers", "lilies", "poppies", "violets",
           "bluebells", "dandelions", "daffodils", "buttercups", "pansies", "clover"]
BIRDS = ["robins", "sparrows", "crows", "seagulls", "pigeons", "parrots", "swans", "geese",
         "ducks", "owls", "blackbirds", "finches", "woodpeckers", "bluebirds"]
BUGS = ["ants", "bees", "butterflies", "ladybugs", "beetles", "crickets", "fireflies",
        "dragonflies", "caterpillars", "grasshoppers", "worms", "snails", "spiders"]
VEHICLES = [("bus", "rode the bus"), ("train", "took the train"), ("boat", "sailed in a boat"),
            ("bike", "rode a bike"), ("car", "drove in the car"), ("tractor", "rode on a tractor"),
            ("wagon", "rode in a wagon"), ("ferry", "took the ferry"), ("truck", "rode in a truck")]
SOUNDS = ["a loud bang", "a soft tapping", "a strange squeak", "a low rumble", "a funny buzz",
          "a quiet scratching", "a tiny splash", "a sharp crack", "a gentle knock", "a long howl"]
SOUND_SOURCES = ["It was only the wind in the chimney.", "It was a little mouse looking for crumbs.",
                 "It was a branch tapping on the window.", "It was the cat chasing a ball of yarn.",
                 "It was a bird building a nest on the roof.", "It was the old clock in the hall.",
                 "It was a hedgehog eating snails under the steps.", "It was rain dripping into a bucket."]
ACTIVITIES = ["build a sand castle", "pick berries", "count the stars", "jump in puddles",
              "feed the ducks", "plant seeds", "collect pretty leaves", "draw pictures",
              "sing songs", "play hide and seek", "chase butterflies", "look for frogs",
              "make a snowman", "swing on the swings", "climb the little hill", "fly paper planes",
              "blow bubbles", "paint rocks", "read stories", "bake bread", "dance in the rain",
              "skip stones on the water", "build a tower of blocks", "look at the clouds",
              "water the flowers", "ride the red wagon", "play tag", "dig for worms",
              "make mud pies", "roll down the grassy hill", "gather pine cones", "watch the boats"]
DETAILS = ["The {place} was full of {flowers}.", "{Birds} sang in the trees.",
           "Little {bugs} crawled in the grass.", "There were {n} {birds} sitting on a fence.",
           "The air smelled of {flowers} and fresh grass.", "A {color} boat floated on the water.",
           "{Bugs} buzzed around the {flowers}.", "A soft breeze moved the leaves.",
           "Near the path grew {n} tall {flowers}.", "Two {color} butterflies danced in the air.",
           "Somewhere far away, a dog was barking.", "The grass was wet and shiny with dew.",
           "A family of {birds} walked by in a line.", "An old bench stood under a {color} umbrella.",
           "Children were laughing and running around.", "The path was covered with {color} leaves."]
AGES = [str(n) for n in range(2, 100)]


@dataclass
class Char:
    """A character: the name used in the story, a first mention, and pronouns."""

    name: str
    intro: str
    he: str

    @property
    def him(self) -> str:
        return "him" if self.he == "he" else "her"

    @property
    def his(self) -> str:
        return "his" if self.he == "he" else "her"


def cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def an(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


class Teller:
    """Fills one story's slots and tells it beat by beat."""

    def __init__(self, rng: random.Random):
        self.r = rng

    def pick(self, seq):
        return self.r.choice(seq)

    def char(self, exclude: tuple[str, ...] = ()) -> Char:
        r = self.r
        while True:
            kind = r.random()
            if kind < 0.55:
                he = r.choice(["he", "she"])
                name = r.choice(BOYS if he == "he" else GIRLS)
                noun = "boy" if he == "he" else "girl"
                intro = f"{an(r.choice(SIZES))} {noun} named {name}"
                if r.random() < 0.3:
                    intro += f" who was {r.choice(['four', 'five', 'six', 'seven', 'eight'])} years old"
            else:
                animal, name, he = r.choice(ANIMALS)
                intro = f"{an(r.choice(SIZES))} {animal} named {name}"
            if name not in exclude:
                return Char(name, intro, he)

    def fill(self, template: str, **slots) -> str:
        out = template.format(**slots)
        # Capitalise each sentence start that a slot may have left lower-case.
        return cap(out)

    def tell(self) -> str:
        r = self.r
        hero = self.char()
        friend = self.char(exclude=(hero.name,))
        adult_name, adult_he = r.choice(ADULTS)
        adult = Char(adult_name, adult_name, adult_he)
        place, at_place, high = r.choice(PLACES)
        obj, adjs, verb = r.choice(OBJECTS)
        adj = r.choice(adjs)
        weather = r.choice(["sunny", "sunny", "windy", "cloudy", "snowy"])
        s = dict(H=hero.name, he=hero.he, He=cap(hero.he), him=hero.him, his=hero.his,
                 His=cap(hero.his), F=friend.name, fhe=friend.he, Fhe=cap(friend.he),
                 fhim=friend.him, fhis=friend.his, A=adult.name, Acap=cap(adult.name),
                 ahe=adult.he, Ahe=cap(adult.he), place=place, at=at_place, high=high, obj=obj,
                 adj=adj, verb=verb, food=r.choice(FOODS), happy=r.choice(HAPPY),
                 sad=r.choice(SAD), say=r.choice(SAY), himself=hero.him + "self")
        birds, bugs = r.choice(BIRDS), r.choice(BUGS)
        vehicle, rode = r.choice(VEHICLES)
        acts = r.sample(ACTIVITIES, 2)
        s.update(color=r.choice(COLORS), flowers=r.choice(FLOWERS), birds=birds, Birds=cap(birds),
                 bugs=bugs, Bugs=cap(bugs), n=r.choice(AGES[:11] * 4 + AGES), n2=r.choice(AGES[:20]), vehicle=vehicle,
                 rode=rode, sound=r.choice(SOUNDS), source=r.choice(SOUND_SOURCES),
                 activity=acts[0], activity2=acts[1], food2=r.choice(FOODS))
        arc_name, arc = r.choice(ARCS)
        lines = [self.opening(hero, friend, s, weather, knows_friend=arc_name != "new_friend")]
        if r.random() < 0.7:  # a little scenery before the plot starts
            details = [self.fill(d, **s) for d in r.sample(DETAILS, r.choice([1, 1, 2]))]
            if r.random() < 0.5:
                details.append(self.fill(r.choice([
                    "{H} liked to {activity} and {activity2}.",
                    "Most days, {H} and {F} would {activity} together.",
                    "{His} favorite thing to do was to {activity}.",
                    "{H} was {n} days away from {his} birthday, and {he} could not wait."]), **s))
            lines.append(" ".join(details))
        link = r.randrange(1 << 30)  # one choice shared by every Linked slot of this story
        for beat in arc:
            lines.append(" ".join(
                self.fill(options[link % len(options)] if isinstance(options, Linked)
                          else self.pick(options), **s)
                for options in beat if not (isinstance(options, Optional) and r.random() < 0.5)))
        if r.random() < 0.45:
            lines.append(self.fill(self.pick(MORALS.get(arc_name, MORALS["any"])), **s))
        lines.append(self.fill(self.pick(ENDINGS), **s))
        # Join beats into one to three paragraphs.
        paras, cur = [], []
        for line in lines:
            cur.append(line)
            if len(cur) >= 2 and r.random() < 0.35:
                paras.append(" ".join(cur))
                cur = []
        if cur:
            paras.append(" ".join(cur))
        return "\n\n".join(paras)

    def opening(self, hero: Char, friend: Char, s: dict, weather: str, knows_friend: bool) -> str:
        r = self.r
        time = r.choice(TIMES)
        first = r.choice([
            f"{time}, there was {hero.intro}.",
            f"{time}, {hero.intro} lived in a little house close to the {s['place']}.",
            f"There once was {hero.intro}.",
            f"{time}, {hero.intro} went to play {s['at']}.",
        ])
        second = [
            f"{cap(hero.he)} loved to play with {hero.his} {s['adj']} {s['obj']}.",
            f"{cap(hero.he)} liked to run and jump {s['at']}.",
            f"{hero.name} had {an(s['adj'])} {s['obj']} that {hero.he} loved very much.",
        ]
        if knows_friend:
            second += [f"{cap(hero.his)} best friend was {friend.intro}.",
                       f"Every day, {hero.name} played with {hero.his} friend {friend.name}."]
        second = r.choice(second)
        return " ".join([first, second, r.choice(WEATHER[weather])])


class Optional(list):
    """A beat's sentence that is told only half of the time."""


class Linked(list):
    """Templates that must agree across beats (the i-th option goes with every other i-th option)."""


# Each arc is (name, beats); each beat a list of sentence slots; each slot a list of
# templates to choose from. Slots wrapped in Optional(...) are sometimes skipped; slots wrapped
# in Linked(...) pick the same index everywhere in a story, so that cause and effect agree.
ARCS = [
    ("lost", [  # a thing is lost, searched for, found
        [["{H} wanted to {verb} {his} {adj} {obj} {at}.", "{H} took {his} {adj} {obj} to the {place}."],
         ["{He} played with it all morning.", "{He} had so much fun."]],
        [["But when {he} looked down, the {obj} was gone!", "Then {H} put the {obj} down to pick a flower. When {he} turned around, it was not there!"],
         ['"Oh no! Where is my {obj}?" {H} {say}.', '"My {obj}! I lost my {obj}!" {H} cried.'],
         ["{H} felt {sad}."]],
        [["{He} looked under the bench.", "{He} looked behind the bushes.", "{He} looked near the big rocks."],
         ["But the {obj} was not there.", "But {he} could not find it."],
         Optional(["{He} looked everywhere, but it was still lost.", "{He} looked and looked until {his} feet were tired."])],
        [["Then {F} came by.", "Just then, {his} friend {F} walked over."],
         ['"Why are you sad?" {F} asked.', '"What is wrong?" {F} asked.'],
         ['"I lost my {obj}," said {H}.', '"I cannot find my {adj} {obj}," {H} said.'],
         ['"I will help you look," said {F}.', '"Don\'t worry. We can find it together," said {F}.']],
        [["They looked together.", "The two friends looked high and low."],
         ["At last, {F} saw something {adj} near {high}.", "Soon {F} shouted, \"Look! There it is!\"", "Then they saw a puppy with the {obj} in its mouth!"],
         ["It was the {obj}!", "There was the {obj}, safe and sound."]],
        [["{H} hugged {his} {obj} and smiled.", "{H} picked up the {obj} and jumped with joy."],
         ['"Thank you, {F}!" {he} said.', '"You are the best friend," {H} said to {F}.'],
         ["{H} was so {happy}.", "From then on, {H} always kept the {obj} close."]],
    ]),
    ("stuck", [  # a thing is stuck up high; two tries; help
        [["{H} and {F} went to play {at}.", "{H} took {his} {adj} {obj} {at}."],
         ["They wanted to {verb} the {obj}.", "{H} wanted to {verb} {his} {obj} all day."]],
        [["Suddenly, a gust of wind came.", "Then {H} threw the {obj} too high.", "But the {obj} flew away from {his} hands."],
         ["The {obj} got stuck on {high}!", "The {obj} landed on {high} and stayed there."],
         ['"Oh no!" said {H}. "My {obj} is stuck!"', '"How will I get it down?" {H} {say}.']],
        [["{H} jumped as high as {he} could.", "{H} tried to climb up, but it was too high."],
         ["But {he} could not reach it.", "But {he} was too small."]],
        [["Then {F} found a long stick.", "{F} had an idea. \"Let's use a stick!\""],
         ["They poked at the {obj}, but the stick was too short.", "They tried and tried, but the {obj} did not move."],
         Optional(["{H} felt {sad}.", "{H} almost cried."])],
        [["Then {A} came by.", "Just then, {A} walked past.", "So they went to ask {A} for help."],
         ['"Can you help us?" asked {F}.', '"Please help! My {obj} is stuck," {H} said.'],
         ["{Acap} smiled and brought a tall ladder.", "{Acap} was tall and reached up high.", "{Acap} gave the branch a little shake."],
         ["The {obj} came down!", "Down came the {obj}, right into {H}'s hands."]],
        [['"Thank you!" said {H} and {F}.', '"Thank you so much," {H} said with a big smile.'],
         ["They played together until the sun went down.", "{H} was {happy}, and {he} held the {obj} tight."]],
    ]),
    ("broken", [  # breaks something, tells the truth
        [["{H} was playing with a ball inside the house.", "{H} was running around the kitchen."],
         Optional(['"Please do not play ball in the house," {A} had said.', "{Acap} had told {him} to be careful."])],
        [["Crash! The ball hit a pretty vase, and it broke into pieces.", "Bump! {H} knocked {A}'s favorite cup off the table. It broke.", "Snap! {H} stepped on {F}'s {adj} {obj} and it broke."],
         ["{H} felt scared.", "{H}'s heart beat fast.", "{H} did not know what to do."]],
        [["{He} thought about hiding the pieces.", "{He} wanted to run away and hide."],
         ["But then {he} remembered that telling the truth is important.", "But {he} knew that hiding it would be wrong."]],
        [["{H} went to {A}.", "{H} took a deep breath and walked to {A}."],
         ['"I am sorry," {he} said. "I broke it. It was an accident."', '"I did something bad," {H} said quietly. "I broke it."'],
         ["{Acap} looked at {H} and smiled a little.", "{Acap} was quiet for a moment."],
         ['"Thank you for telling me the truth," {ahe} said.', '"I am glad you told me," said {A}. "Accidents happen."']],
        [["Together they fixed it with glue.", "They cleaned up the pieces together.", "{Acap} showed {H} how to fix it with tape and glue."],
         ["{H} felt much better.", "{H} felt light and {happy}."]],
    ]),
    ("fear", [  # is afraid, is encouraged, tries, succeeds
        [["{H} was afraid of the dark.", "{H} was scared of the big slide {at}.", "{H} was afraid of deep water.", "{H} was scared of the loud thunder.", "{H} was afraid of the big dog next door."],
         ["Every time {he} thought about it, {his} tummy felt funny.", "It made {him} want to hide."]],
        [["One day, {F} saw that {H} looked {sad}.", "{F} noticed that {H} was shaking."],
         ['"What is wrong?" asked {F}.', '"Why do you look so scared?" asked {F}.'],
         ['"I am scared," {H} whispered.', '"I am too scared," {H} said in a small voice.']],
        [['"It is okay to be scared," {F} said. "I will be right here with you."', '"We can do it together," said {F}. "One small step at a time."'],
         Optional(["{F} held {H}'s hand.", "{F} gave {H} a warm hug."])],
        [["{H} took a deep breath.", "{H} counted to three."],
         ["{He} took one small step, then another.", "{He} tried a little bit, and then a little bit more."],
         ["It was not so bad after all!", "Soon {he} was not scared anymore.", "{He} found out it was fun!"]],
        [['"I did it!" {H} shouted.', '"Look at me! I am brave!" {H} said.'],
         ["{H} was very proud.", "{F} clapped and cheered.", "{Acap} gave {H} a big hug."]],
    ]),
    ("sharing", [  # will not share, sees a friend sad, shares
        [["{H} had a bag of {food}.", "{H} had a box of {food} from {A}.", "{H} had a new {adj} {obj}."],
         ["{He} did not want to share with anyone.", "{He} wanted to keep it all for {himself}."]],
        [["{F} came over and asked, \"Can I have some too?\"", "{F} asked, \"May I play with you?\""],
         ['"No! It is mine!" said {H}.', '"No, go away," {H} said.'],
         ["{F} felt {sad} and walked away.", "{F} looked down at the ground and left."]],
        [["Soon {H} felt lonely.", "{H} sat alone. It was not much fun."],
         ["{He} saw {F} sitting by a tree, all alone.", "{He} thought about how {F} must feel."],
         Optional(["{His} heart felt heavy.", "{He} did not feel good inside."])],
        [["{H} walked over to {F}.", "{H} ran to find {F}."],
         ['"I am sorry," said {H}. "Do you want to share with me?"', '"Here, this is for you," {H} said. "Let\'s share."'],
         ["{F} smiled a big smile.", "{F}'s face lit up."]],
        [["They shared and played together all afternoon.", "They sat side by side and had fun together."],
         ["{H} learned that sharing makes everyone happy.", "Sharing felt much better than keeping everything."]],
    ]),
    ("rain", [  # a plan is spoiled by rain; they make the best of it
        [["{H} and {F} wanted to have a picnic {at}.", "{H} wanted to go {at} to {verb} {his} {obj}.", "{H} planned a fun day {at} with {F}."],
         ["They packed {food} and a blanket.", "{He} got everything ready.", "{He} was so excited."]],
        [["But then dark clouds came.", "But just as they were leaving, it started to rain."],
         ["Rain poured down from the sky.", "Big drops of rain fell everywhere.", "Thunder rumbled far away."],
         ['"Oh no," said {H}. "Now we cannot go."', '"It is not fair!" {H} {say}.']],
        [["{H} sat by the window and felt {sad}.", "{H} looked out the window with a long face."],
         ["{A} came and sat next to {him}.", "Then {A} had an idea."]],
        [['"Why don\'t we have a picnic inside?" said {A}.', '"Let\'s build a fort with pillows!" said {A}.', '"We can bake {food} together," said {A}.', '"How about we paint a picture of the {place}?" said {A}.'],
         ["{H} and {F} thought it was a great idea.", "{H} smiled. \"Yes!\""],
         ["They had so much fun inside.", "They laughed and played all afternoon."]],
        [["When the rain stopped, a rainbow came out.", "Later, the sun came back and they saw a big rainbow."],
         ['"A rainbow!" {H} {say}.', '"Look how pretty it is," said {F}.'],
         ["It was a good day after all.", "{H} learned that a rainy day can be fun too."]],
    ]),
    ("help", [  # finds someone in trouble and helps
        [["{H} was walking {at}.", "{H} was playing {at} with {his} {obj}."],
         ["{He} heard a small sound.", "Suddenly, {he} heard someone crying."]],
        [Linked(["It was a little bird with a hurt wing.", "It was a lost puppy, all wet and cold.", "It was a tiny kitten stuck in a bush.", "It was an old man who had dropped all his {food}."]),
         ['"Oh, you poor thing," said {H}.', '"Do not worry, I will help you," {H} said softly.']],
        [Linked(["{H} gently picked up the bird.", "{H} wrapped the puppy in {his} scarf.", "{H} carefully pulled the kitten out of the bush.", "{H} helped pick everything up, one by one."]),
         Optional(["It was hard, but {he} did not give up.", "{He} was very careful."])],
        [Linked(["{He} took the bird home to {A}.", "{He} took the puppy home to {A}.", "{He} took the kitten home to {A}.", "{He} walked the old man home, and {A} came along."]),
         Linked(["Together, they made a warm bed for the bird from a box.", "{Acap} dried the puppy with a soft towel.", "{Acap} gave the kitten a bowl of milk.", "The old man gave {H} some of his {food}."])],
        [Linked(["After a few days, the bird could fly again.", "The next day, they found the puppy\'s family.", "Soon the kitten was purring on {H}\'s lap.", "The old man smiled and waved goodbye."]),
         ["Everyone smiled at {H}.", "{Acap} said {H} had a very kind heart."],
         ["{H} felt warm and {happy} inside.", "Helping others made {H} feel {happy}."]],
    ]),
    ("surprise", [  # makes a gift, a mess, friend helps, gift is loved
        [["It was {A}'s birthday soon.", "{H} wanted to make a surprise for {A}."],
         ["{H} wanted to make something special.", "{He} thought and thought about what to make."]],
        [Linked(["{He} decided to bake a cake.", "{He} decided to make a card with {his} crayons.", "{He} decided to pick flowers {at}."]),
         ["But it was harder than {he} thought.", "But things did not go as planned."],
         Linked(["Flour went everywhere!", "The crayons broke and the paper tore.", "The wind blew the flowers away."]),
         ['"Oh no, it is all a mess," {H} said.', "{H} felt {sad}."]],
        [["Then {F} came to help.", "{F} knocked on the door. \"Can I help?\""],
         ["Together they tried again, slowly and carefully.", "They worked side by side."],
         ["This time it was perfect.", "This time it looked beautiful."]],
        [["When {A} saw the surprise, {ahe} was so happy.", "{Acap} opened the door and gasped."],
         ['"This is the best gift ever," said {A}.', '"You made this for me?" {A} asked with a big smile.'],
         ["{Acap} hugged {H} and {F}.", "Everyone laughed and had a wonderful time."]],
    ]),
    ("skill", [  # tries to learn, falls, practises, succeeds
        [["{H} wanted to learn to ride a bike.", "{H} wanted to learn to swim.", "{H} wanted to learn to tie {his} shoes.", "{H} wanted to learn to whistle.", "{H} wanted to learn to climb the big rope {at}."],
         ["{F} could already do it, and {H} wanted to do it too.", "It looked easy when {A} did it."]],
        [["The first time {he} tried, {he} fell down.", "{He} tried, but it did not work.", "{He} tried and tried, but it was too hard."],
         ['"I can\'t do it!" {H} {say}.', '"I will never learn," {H} said.'],
         Optional(["{He} wanted to give up.", "{He} felt like crying."])],
        [['"Don\'t give up," said {A}. "Everyone falls at first."', '"Keep trying," said {F}. "You are getting better."'],
         ["So {H} tried again.", "{H} wiped {his} eyes and tried again."]],
        [["{He} practiced every day.", "{He} tried again the next day, and the day after that."],
         ["Each time, it got a little easier.", "Little by little, {he} got better."]],
        [["One day, {he} did it!", "At last, it worked!"],
         ['"I did it! I really did it!" {H} shouted.', '"Look at me!" {H} called.'],
         ["{H} was so proud of {himself}.", "{F} and {A} cheered for {him}."]],
    ]),
    ("lost_way", [  # follows something, gets lost, finds the way home
        [["{H} saw a pretty butterfly {at}.", "{H} saw a little rabbit hop by.", "{H} heard a bird singing a happy song."],
         ["{He} followed it further and further.", "{He} ran after it, deeper and deeper into the woods."]],
        [["When {he} stopped, {he} did not know where {he} was.", "Soon the trees all looked the same."],
         ["{H} was lost.", '"Where am I?" {H} said.'],
         ["{He} felt scared and {sad}.", "{He} sat down on a log and wanted to cry."]],
        [["Then {F} came by.", "Then {he} heard a friendly voice. It was {F}."],
         ['"Are you lost?" asked {F}.', '"What are you doing here all alone?" {F} asked.'],
         ['"I am lost," said {H}. "I want to go home."', '"I cannot find my way home," {H} said.']],
        [['"I know the way," said {F}. "Follow me."', '"Remember the big red barn?" {F} said. "Your home is right next to it."'],
         ["They walked together past the river and the old tree.", "They walked and walked until {H} saw {his} house."]],
        [["{A} was waiting at the door.", "{Acap} ran out to hug {him}."],
         ['"We were so worried," said {A}.', '"I am so glad you are home," said {A}.'],
         ["{H} thanked {F} and promised to stay close to home.", "From that day on, {H} never went too far alone."]],
    ]),
]

ARCS += [
    ("new_friend", [  # a shy newcomer; the hero says hello; they become friends
        [["One day, a new friend named {F} came to live {at}.", "A new neighbor named {F} moved into the house next door.", "On the first day of school, {H} saw someone new sitting alone."],
         ["{Fhe} looked shy and did not talk to anyone.", "{Fhe} stood by the wall and looked at {fhis} shoes."]],
        [["{H} wanted to say hello, but {he} felt shy too.", "{H} did not know what to say."],
         Optional(["{His} cheeks got warm.", "{He} almost turned away."])],
        [["Then {H} remembered how it felt to be new.", "{H} took a deep breath and walked over."],
         ['"Hello! My name is {H}. What is your name?" {he} asked.', '"Hi! Do you want to {activity} with me?" {H} asked.'],
         ['"I am {F}," came the quiet answer.', '"Yes, please," said {F} with a small smile.']],
        [["They played all afternoon.", "They found out that they both loved {food}.", "They laughed at the same silly jokes."],
         ["{F} was not shy anymore.", "{F} told {H} about {fhis} old home far away."]],
        [["From that day on, {H} and {F} were the best of friends.", "Now {H} had a new friend to {activity2} with."],
         ["{H} felt {happy} that {he} had been brave enough to say hello."]],
    ]),
    ("seed", [  # plants a seed, waits, cares for it, it grows
        [["{A} gave {H} a tiny seed.", "{H} found a little seed {at}."],
         ['"What will it grow into?" asked {H}.', '"Plant it, and you will see," said {A}.']],
        [["{H} dug a small hole and put the seed in the dirt.", "{H} planted the seed in a {color} pot."],
         ["{He} gave it water every morning.", "Every day, {he} gave it a little water and put it in the sun."]],
        [["But nothing happened.", "For {n} days, nothing came up."],
         ['"Why is it not growing?" {H} asked.', '"Maybe it is broken," {H} said sadly.'],
         ['"Be patient," said {A}. "Good things take time."', '"Seeds need time," {A} said. "Keep taking care of it."']],
        [["One morning, {H} saw a tiny green leaf!", "Then one day, a little green sprout poked out of the dirt."],
         ["It grew taller and taller.", "Soon it had big leaves and a long stem."],
         ["At last, it grew into a tall plant with {color} flowers.", "By summer, it was covered with {food}!"]],
        [["{H} showed it to {F}.", "{H} ran to show {A}."],
         ['"You did it!" said {F}.', '"Look what patience can do," said {A}.'],
         ["{H} felt proud of {his} little plant.", "{H} learned that waiting can be worth it."]],
    ]),
    ("treasure", [  # finds a map, follows clues, the treasure is friendship or something small
        [["{H} found an old map in the attic.", "{H} and {F} found a paper map under a rock {at}.", "Grandpa gave {H} a secret map."],
         ["On it was a big red X.", "The map showed a path and a big X."],
         ['"A treasure map!" {H} {say}.', '"Let\'s find the treasure!" said {F}.']],
        [["They walked past the old well.", "They crossed the little bridge over the stream."],
         ["They counted {n} steps from the big rock.", "They turned left at the tall tree, just like the map said."],
         Optional(["It was getting late, and {F} wanted to stop.", "The path was long and {H} was tired."])],
        [['"We are close," said {H}. "Don\'t give up."', '"Just a little more," said {F}.'],
         ["At last, they found the spot with the X.", "They found a small wooden box buried in the sand."]],
        [["They opened the box.", "With shaking hands, {H} lifted the lid."],
         ["Inside were {n} shiny buttons and a note.", "Inside was a box of {food} and an old photo.", "Inside was a tiny {color} stone that sparkled in the sun."],
         ['Under it was a note. It said, "The best treasure is a friend."', "It was not gold, but it was the best treasure ever."]],
        [["{H} and {F} smiled at each other.", "They shared the treasure and walked home together."],
         ["It had been a real adventure.", "{H} kept the treasure in a special place."]],
    ]),
    ("race", [  # a race; the hero stops to help and still wins friends
        [["There was a big race {at}.", "All the animals {at} wanted to have a race."],
         ["{H} wanted to win more than anything.", "{H} had been practicing for {n} days."]],
        [["On your marks, get set, go!", "The whistle blew and everyone started to run."],
         ["{H} ran as fast as {he} could.", "{H} was in front of everyone!"]],
        [["Then {he} saw {F} fall down and hurt {fhis} knee.", "Then {he} heard {F} crying. {Fhe} had tripped on a rock."],
         ["{H} stopped running.", "{H} did not know what to do. {He} wanted to win, but {F} needed help."]],
        [["{H} went back and helped {F} get up.", "{H} gave {F} a hand and they walked together."],
         ['"Are you okay?" asked {H}.', '"Thank you for stopping," said {F}.'],
         ["They crossed the finish line last, hand in hand.", "Together, they walked to the finish line."]],
        [["Everyone cheered the loudest for {H}.", "{A} gave {H} a special medal for being kind."],
         ["{H} did not win the race, but {he} felt like a winner.", "{H} learned that helping a friend is better than winning."]],
    ]),
    ("noise", [  # a mystery sound at night; the hero investigates
        [["One night, {H} heard {sound}.", "Late at night, {H} woke up. There was {sound} outside {his} room."],
         ['"What was that?" {H} whispered.', "{H} pulled the blanket up to {his} nose."]],
        [["The sound came again.", "It did not stop."],
         ["{H} was scared, but {he} wanted to know what it was.", "{H} thought it might be a monster."]],
        [["{He} took {his} little lantern and went to wake up {A}.", "{He} tiptoed down the hall to get {A}."],
         ["Together they looked in the kitchen.", "Slowly, they opened the door."]],
        [["{source}", "{source}"],
         ["{H} started to laugh.", "{H} and {A} laughed and laughed."],
         ['"There is nothing to be scared of," said {A}.', '"Mystery solved," said {H}.']],
        [["{H} went back to bed and fell asleep right away.", "Soon {H} was asleep, dreaming of {food}."]],
    ]),
    ("trip", [  # a trip to see someone; counting things on the way
        [["{H} and {A} were going to visit Aunt Rose {at}.", "{H} was going on a trip with {A}."],
         ["They {rode} to get there.", "First, they {rode}."]],
        [["On the way, {H} counted {n} cows and {n2} sheep.", "On the way, {H} saw {birds} and a big {color} barn.", "{H} looked out the window at the hills and the fields."],
         ['"Are we there yet?" asked {H}.', '"How much longer?" {H} asked.']],
        [["Then the {vehicle} stopped. Something was wrong!", "But the {vehicle} had to stop because a big tree had fallen on the road."],
         ["Everyone had to wait.", "They waited and waited."],
         ["{H} sang songs and played games to pass the time.", "{A} told {H} a story about when {ahe} was little."]],
        [["At last, they could go on.", "Soon some kind people moved the tree, and they went on."],
         ["When they arrived, there was a big table full of {food} and {food2}.", "When they arrived, everyone was waiting with hugs."]],
        [["It was a long trip, but it was worth it.", "{H} told everyone about the {vehicle} and the fallen tree."],
         ["{H} could not wait to come back.", "That night, {H} fell asleep smiling."]],
    ]),
]

MORALS = {  # arc name -> morals that fit it; "any" fits every arc
    "lost": ["{H} learned to take good care of the things {he} loves.",
             "Good friends always help you look."],
    "stuck": ["{H} learned that it is good to ask for help.",
              "The moral of the story is: when you cannot do it alone, ask a friend."],
    "broken": ["The moral of the story is: always tell the truth.",
               "{H} learned that telling the truth makes you feel better."],
    "fear": ["{H} learned that being brave does not mean you are not scared.",
             "The moral of the story is: a friend makes every fear smaller."],
    "sharing": ["The moral of the story is: sharing is caring.",
                "{H} learned that sharing makes friends happy."],
    "rain": ["The moral of the story is: make the best of every day.",
             "{H} learned that fun can be found anywhere."],
    "help": ["The moral of the story is: be kind, and kindness will come back to you."],
    "skill": ["That day, {H} learned to never give up.",
              "The moral of the story is: practice makes things easier."],
    "lost_way": ["{H} learned to always stay close to home."],
    "new_friend": ["The moral of the story is: a kind hello can make a new friend."],
    "seed": ["The moral of the story is: good things take time."],
    "race": ["The moral of the story is: kindness matters more than winning."],
    "any": ["{H} learned that good friends help each other.",
            "The moral of the story is: together, everything is easier."],
}
ENDINGS = ["The end.", "And they all lived happily ever after.",
           "That night, {H} went to bed with a smile.",
           "It was the best day ever.",
           "{H} and {F} stayed best friends forever.",
           "Then it was time for dinner, and {H} ran home.",
           "{H} could not wait to tell {A} all about it.",
           "And {H} never forgot that day."]


def generate(n_stories: int = 2200, seed: int = 1337) -> list[str]:
    """Tell ``n_stories`` stories with a seeded generator (same seed, same stories)."""
    if n_stories < 1:
        raise ValueError(f"n_stories must be >= 1, got {n_stories}")
    teller = Teller(random.Random(seed))
    return [teller.tell() for _ in range(n_stories)]


def split(stories: list[str], val_fraction: float = 0.05, seed: int = 1337) -> tuple[str, str]:
    """Shuffle stories (seeded) and join them into a train text and a val text."""
    order = list(range(len(stories)))
    random.Random(seed + 1).shuffle(order)
    n_val = max(1, round(len(stories) * val_fraction))
    val = [stories[i] for i in order[:n_val]]
    train = [stories[i] for i in order[n_val:]]
    join = lambda xs: f"\n{EOT}\n".join(xs) + f"\n{EOT}\n"  # noqa: E731
    return join(train), join(val)


def split_records(records: list[str], val_fraction: float = 0.05, seed: int = 1337) -> tuple[str, str]:
    """Like :func:`split` for already shuffled records (the mix): the first 5% are val."""
    n_val = max(1, round(len(records) * val_fraction))
    join = lambda xs: f"\n{EOT}\n".join(xs) + f"\n{EOT}\n"  # noqa: E731
    return join(records[n_val:]), join(records[:n_val])


def mixed_corpus(n_stories: int, seed: int = 1337, lookup: float = 0.0) -> tuple[str, str, dict[str, int]]:
    """The pretraining mix: ``n_stories`` stories plus instruction-style records (see
    ``records.py``), split 95/5; ``lookup`` in-context lookup lists per story (0: none, the
    mix of the first stages). Returns ``(train, val, counts per record kind)``."""
    from records import mix_records  # a sibling script, importable when this one runs

    records = mix_records(generate(n_stories, seed), seed=seed + 2, fractions={"lookup": lookup})
    counts: dict[str, int] = {}
    for kind, _ in records:
        counts[kind] = counts.get(kind, 0) + 1
    train, val = split_records([text for _, text in records], seed=seed)
    return train, val, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-stories", type=int, default=2200)
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--mix", action="store_true",
                        help="add the instruction-style records (records.py) to the stories: the "
                             "pretraining mix of the shipped models; write it to a cache folder")
    parser.add_argument("--lookup", type=float, default=0.0, metavar="F",
                        help="with --mix: add F in-context lookup lists per story (records.py)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = parser.parse_args()
    if args.mix:
        train, val, counts = mixed_corpus(args.n_stories, args.seed, args.lookup)
        args.out.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(args.out / "counts.json", (json.dumps(counts, indent=1) + "\n").encode())
    else:
        train, val = split(generate(args.n_stories, args.seed), seed=args.seed)
    for name, text in (("train.txt", train), ("val.txt", val)):
        path = args.out / name
        atomic_write_bytes(path, text.encode("utf-8"))
        print(f"{path}: {len(text.encode('utf-8')):,} bytes, {text.count(EOT)} records")


if __name__ == "__main__":
    main()
