"""Write ``chats.jsonl``: deterministic synthetic conversations (invented here, no external text)
for the ``local-*`` chat specs, one ``{"messages": [{role, content}, ...]}`` per line.

Each conversation has an optional system message and 1-3 user/assistant exchanges drawn from
question templates whose answers are determined by the question and vary in length from one
word to several sentences (counting, spelling, repeating, arithmetic, colours, short stories),
so the answer length a model produces can be checked against the data's. Run from the
repository root: ``python experiments/chat/data/make_chats.py`` (byte-identical on every run).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SEED = 7
CONVERSATIONS = 1200
OUTPUT = Path(__file__).with_name("chats.jsonl")

NUMBERS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
           "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"]
WORDS = ["cat", "dog", "sun", "tree", "moon", "fish", "bird", "star", "cake", "boat", "frog", "lamp", "rain", "bell"]
COLOURS = {"sky": "blue", "grass": "green", "snow": "white", "sun": "yellow", "night": "black", "apple": "red",
           "orange": "orange", "cloud": "grey", "leaf": "green", "rose": "red", "banana": "yellow", "coal": "black"}
NAMES = ["Lily", "Tom", "Mia", "Ben", "Sara", "Max", "Anna", "Sam"]
PLACES = ["the forest", "the farm", "the river", "the park", "the hill", "the village"]
THINGS = ["a red ball", "a blue kite", "a shiny key", "an old book", "a small boat", "a yellow hat"]
SYSTEMS = ["You are a helpful assistant.", "You are a friendly assistant. Answer briefly.", "Answer the question."]


def count(rng: random.Random) -> tuple[str, str]:
    a = rng.randint(0, 15)
    b = rng.randint(a, min(20, a + rng.randint(0, 12)))
    return f"Count from {NUMBERS[a]} to {NUMBERS[b]}.", " ".join(NUMBERS[a : b + 1]) + "."


def spell(rng: random.Random) -> tuple[str, str]:
    word = rng.choice(WORDS)
    return f"How do you spell {word}?", "-".join(word.upper())


def repeat(rng: random.Random) -> tuple[str, str]:
    word, n = rng.choice(WORDS), rng.randint(1, 9)
    return f"Say {word} {NUMBERS[n]} times.", " ".join([word] * n)


def add(rng: random.Random) -> tuple[str, str]:
    a, b = rng.randint(0, 10), rng.randint(0, 10)
    return f"What is {NUMBERS[a]} plus {NUMBERS[b]}?", f"{NUMBERS[a].capitalize()} plus {NUMBERS[b]} is {NUMBERS[a + b]}."


def colour(rng: random.Random) -> tuple[str, str]:
    thing = rng.choice(sorted(COLOURS))
    return f"What colour is the {thing}?", f"The {thing} is {COLOURS[thing]}."


def story(rng: random.Random) -> tuple[str, str]:
    name, place, thing = rng.choice(NAMES), rng.choice(PLACES), rng.choice(THINGS)
    sentences = [f"{name} went to {place}.", f"There {name} found {thing}.", f"{name} took it home.",
                 f"{name} showed it to mom.", "Mom smiled.", f"{name} was happy all day."]
    n = rng.randint(2, len(sentences))
    ask = rng.choice(["Tell me a story about", "Write a short story about", "Tell me about"])
    return f"{ask} {name} in {NUMBERS[n]} sentences.", " ".join(sentences[:n])


TASKS = [count, spell, repeat, add, colour, story]


def conversation(rng: random.Random) -> dict:
    messages = []
    if rng.random() < 0.3:
        messages.append({"role": "system", "content": rng.choice(SYSTEMS)})
    for _ in range(rng.choice([1, 1, 2, 3])):
        question, answer = rng.choice(TASKS)(rng)
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return {"messages": messages}


def main() -> None:
    rng = random.Random(SEED)
    OUTPUT.write_text("".join(json.dumps(conversation(rng), separators=(",", ":")) + "\n" for _ in range(CONVERSATIONS)))


if __name__ == "__main__":
    main()
