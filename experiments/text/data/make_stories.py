"""Write ``stories.txt``: deterministic synthetic children's stories (TinyStories-like, invented
here, no external text), one story per blank-line-separated paragraph, for the ``local-*`` specs.

A story keeps its hero, pronoun, friend and object across 5-9 sentences drawn from templates, so
a model can learn both local grammar and within-story consistency. Run from the repository root:
``python experiments/text/data/make_stories.py`` (the output is byte-identical on every run).
"""

from __future__ import annotations

import random
from pathlib import Path

SEED = 2024
STORIES = 2400
OUTPUT = Path(__file__).with_name("stories.txt")

HEROES = [
    ("Lily", "she", "her"), ("Tom", "he", "his"), ("Mia", "she", "her"), ("Ben", "he", "his"),
    ("Sara", "she", "her"), ("Max", "he", "his"), ("Anna", "she", "her"), ("Sam", "he", "his"),
    ("Lucy", "she", "her"), ("Jack", "he", "his"), ("Emma", "she", "her"), ("Leo", "he", "his"),
    ("Zoe", "she", "her"), ("Finn", "he", "his"), ("Ruby", "she", "her"), ("Theo", "he", "his"),
]
KINDS = ["girl", "boy", "bunny", "puppy", "kitten", "bear", "fox", "duck", "mouse", "frog", "bird", "pony"]
ADJECTIVES = ["little", "happy", "brave", "shy", "curious", "kind", "sleepy", "silly", "small", "clever"]
PLACES = ["a small house", "a big forest", "a quiet village", "a sunny farm", "a tall tree", "a cozy den", "a green park"]
FAMILY = ["mom", "dad", "grandma", "grandpa", "big sister", "little brother"]
FRIENDS = ["a bird", "a cat", "a dog", "a turtle", "a squirrel", "an owl", "a butterfly", "a lamb"]
LIKES = ["play in the sun", "run in the grass", "jump in puddles", "read books", "sing songs", "look at the stars",
         "build with blocks", "draw pictures", "pick flowers", "splash in the pond"]
OBJECTS = [("ball", "red"), ("kite", "blue"), ("box", "shiny"), ("hat", "yellow"), ("cup", "pink"),
           ("stone", "smooth"), ("key", "golden"), ("shell", "white"), ("book", "old"), ("toy car", "green")]
SPOTS = ["the river", "the big rock", "the old fence", "the garden", "the hill", "the pond", "the bridge", "the barn"]
FEELINGS = ["happy", "sad", "scared", "excited", "surprised", "proud", "worried", "glad"]
WEATHER = ["The sun was warm.", "It started to rain.", "The wind was cold.", "The sky was bright and blue.",
           "Snow fell softly on the ground.", "Big clouds came over the hill."]
MORALS = ["sharing makes everyone happy", "it is good to be kind", "friends help each other",
          "being brave is not so hard", "it is important to listen", "saying sorry makes things better"]


def story(rng: random.Random) -> str:
    name, he, his = rng.choice(HEROES)
    kind = "girl" if he == "she" and rng.random() < 0.3 else "boy" if he == "he" and rng.random() < 0.3 else rng.choice(KINDS[2:])
    adjective, place, family = rng.choice(ADJECTIVES), rng.choice(PLACES), rng.choice(FAMILY)
    friend, like, spot = rng.choice(FRIENDS), rng.choice(LIKES), rng.choice(SPOTS)
    thing, color = rng.choice(OBJECTS)
    feeling, later = rng.choice(FEELINGS), rng.choice(FEELINGS)
    He = he.capitalize()
    opening = rng.choice([
        f"Once upon a time, there was a {adjective} {kind} named {name}.",
        f"One day, a {adjective} {kind} named {name} woke up early.",
        f"There once was a {adjective} {kind} called {name}.",
    ])
    sentences = [opening, f"{He} lived in {place} with {his} {family}.", f"{name} loved to {like}."]
    middle = [
        rng.choice(WEATHER),
        f"One morning, {name} went to {spot} and found a {color} {thing}.",
        f"{He} was very {feeling} when {he} saw the {thing}.",
        f"Then {name} met {friend} near {spot}.",
        f'"Can I play with your {thing}?" asked {friend}.',
        rng.choice([f'{name} said, "Yes, we can play together!"', f'{name} said, "No, it is mine."']),
        f"They played with the {color} {thing} all day long.",
        f"{name} and {friend} laughed and ran around {spot}.",
        f"Later, the {thing} fell into {spot} and {name} felt {later}.",
        f"{his.capitalize()} {family} came and helped {name} get the {thing} back.",
    ]
    count = rng.randint(3, 6)
    picks = sorted(rng.sample(range(len(middle)), count))
    sentences += [middle[i] for i in picks]
    ending = rng.choice([
        f"At the end of the day, {name} went home and told {his} {family} about the {thing}.",
        f"{name} learned that {rng.choice(MORALS)}.",
        f"From that day on, {name} and {friend} were best friends.",
        f"That night, {name} went to sleep with the {color} {thing} next to {his} bed.",
    ])
    sentences.append(ending)
    if rng.random() < 0.5:
        sentences.append("The end.")
    return " ".join(sentences)


def main() -> None:
    rng = random.Random(SEED)
    OUTPUT.write_text("\n\n".join(story(rng) for _ in range(STORIES)) + "\n", encoding="utf-8")
    print(f"wrote {OUTPUT} ({OUTPUT.stat().st_size} bytes, {STORIES} stories)")


if __name__ == "__main__":
    main()
