"""The corpus's sentences: a small English grammar sampled with a seeded generator.

A sentence is one of five templates (D determiner or number, A adjective, N noun, V verb, R
adverb, P preposition)::

    D N V R.            the cat sleeps quietly.
    D A N V R.          a small dog runs slowly.
    D A N V P D N.      the old man waits near the red door.
    D N V D A N.        two birds watch the green tree.
    D N V R P D N.      three girls sing loudly under the bridge.

3 to 7 words, about 1 to 2 s of eSpeak speech at 175 words per minute. Numbers (two ... twelve)
take the plural noun and verb, "a"/"the"/"this" the singular. Sentences are drawn with
``numpy.random.Generator`` (never the global RNG) until ``n`` distinct ones are found, so the
list is a function of the generator's state; the grammar holds tens of millions of sentences.
"""

from __future__ import annotations

import numpy as np

from flowmatch._utils.validate import check_positive_int

__all__ = ["generate_sentences", "TEMPLATES"]

SINGULAR_DET = ("the", "a", "this", "one")
NUMBERS = ("two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve")
ADJECTIVES = (
    "small", "big", "old", "young", "red", "green", "blue", "happy", "quiet", "tall", "brown", "clever",
    "lazy", "bright", "cold", "warm", "heavy", "gentle", "strange", "silver",
)  # fmt: skip
#: (singular, plural)
NOUNS = (
    ("cat", "cats"), ("dog", "dogs"), ("man", "men"), ("woman", "women"), ("child", "children"),
    ("bird", "birds"), ("horse", "horses"), ("teacher", "teachers"), ("farmer", "farmers"), ("fox", "foxes"),
    ("girl", "girls"), ("boy", "boys"), ("sailor", "sailors"), ("doctor", "doctors"), ("mouse", "mice"),
    ("baker", "bakers"), ("singer", "singers"), ("rabbit", "rabbits"), ("painter", "painters"), ("king", "kings"),
)  # fmt: skip
#: intransitive-or-transitive verbs, (singular, plural)
VERBS = (
    ("sleeps", "sleep"), ("runs", "run"), ("waits", "wait"), ("sings", "sing"), ("walks", "walk"),
    ("jumps", "jump"), ("smiles", "smile"), ("reads", "read"), ("dances", "dance"), ("works", "work"),
    ("listens", "listen"), ("climbs", "climb"), ("swims", "swim"), ("laughs", "laugh"), ("rests", "rest"),
)  # fmt: skip
TRANSITIVE = (
    ("watches", "watch"), ("finds", "find"), ("follows", "follow"), ("paints", "paint"), ("helps", "help"),
    ("calls", "call"), ("likes", "like"), ("visits", "visit"), ("carries", "carry"), ("cleans", "clean"),
)  # fmt: skip
ADVERBS = (
    "quietly", "slowly", "quickly", "loudly", "happily", "today", "again", "often", "early", "badly",
    "softly", "outside", "alone", "calmly",
)  # fmt: skip
PREPOSITIONS = ("near", "under", "behind", "beside", "inside", "above", "past", "around")
OBJECTS = (
    "door", "tree", "bridge", "river", "house", "garden", "window", "table", "wall", "road", "boat", "hill",
)  # fmt: skip

#: the sentence templates (see the module docstring)
TEMPLATES = ("D N V R", "D A N V R", "D A N V P D O", "D N T D A O", "D N V R P D O")


def pick(rng: np.random.Generator, options: tuple) -> object:
    """One entry of ``options``, uniformly."""
    return options[int(rng.integers(len(options)))]


def subject(rng: np.random.Generator) -> tuple[str, bool]:
    """A determiner or number and whether the noun phrase is plural."""
    plural = bool(rng.integers(3) == 0)  # one subject in three is counted
    return (str(pick(rng, NUMBERS)) if plural else str(pick(rng, SINGULAR_DET))), plural


def sentence(rng: np.random.Generator) -> str:
    """One sentence of a template drawn uniformly."""
    template = str(pick(rng, TEMPLATES)).split()
    det, plural = subject(rng)
    words: list[str] = []
    seen_subject = False
    for sym in template:
        if sym == "D":
            if seen_subject:
                words.append(str(pick(rng, ("the", "a", "this", "that"))))
            else:
                words.append(det)
        elif sym == "A":
            words.append(str(pick(rng, ADJECTIVES)))
        elif sym == "N":
            noun = pick(rng, NOUNS)
            words.append(noun[1] if plural else noun[0])  # type: ignore[index]
            seen_subject = True
        elif sym in ("V", "T"):
            verb = pick(rng, VERBS if sym == "V" else TRANSITIVE)
            words.append(verb[1] if plural else verb[0])  # type: ignore[index]
        elif sym == "R":
            words.append(str(pick(rng, ADVERBS)))
        elif sym == "P":
            words.append(str(pick(rng, PREPOSITIONS)))
        else:  # "O"
            words.append(str(pick(rng, OBJECTS)))
    text = " ".join(words)
    if text.startswith("a ") and words[1][0] in "aeiou":
        text = "an" + text[1:]
    text = text.replace(" a old", " an old")
    return text[0].upper() + text[1:] + "."


def generate_sentences(n: int, rng: np.random.Generator) -> list[str]:
    """``n`` distinct sentences, in the order first drawn from ``rng``."""
    n = check_positive_int("n_sentences", n)
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    out: list[str] = []
    seen: set[str] = set()
    for _ in range(100 * n + 1000):
        s = sentence(rng)
        if s not in seen:
            seen.add(s)
            out.append(s)
            if len(out) == n:
                return out
    raise ValueError(f"the grammar gave only {len(out)} distinct sentences in {100 * n + 1000} draws, asked for {n}")
