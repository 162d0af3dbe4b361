"""A deterministic generator of synthetic chat memories for scale benchmarks.

Turns are built from clause templates filled with names, places, activities and everyday
words drawn with a Zipf-like skew, so sentence lengths (about 6 to 45 words) and term
frequencies look like chat, and keyword posting lists have a realistic long tail. Scopes
(users) get skewed sizes: a few large, many small. Same seed, same corpus.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

NAMES = """Aiko Amara Anil Bea Bruno Carmen Chen Dara Diego Elif Emeka Farah Felix Gita Hana
Hugo Ines Ivan Jada Jonas Kai Kemal Lara Leon Lina Malik Mara Mateo Mei Nadia Nico Noor Omar
Oskar Pia Priya Quinn Rafa Rosa Sami Sara Tariq Tess Uma Vera Wen Yara Yusuf Zoe""".split()
PLACES = """Lisbon Porto Madrid Berlin Hamburg Oslo Kyoto Osaka Lagos Nairobi Lima Quito Denver
Austin Toronto Montreal Dublin Cork Prague Vienna Krakow Seoul Busan Hanoi Manila Perth
Auckland Reykjavik Tallinn Riga Valencia Seville Marseille Lyon Turin Naples Athens Izmir
Cairo Tunis""".split()
ACTIVITIES = """hiking climbing running swimming baking painting pottery knitting cycling
surfing chess gardening camping fishing rowing dancing singing reading journaling skating
skiing birdwatching woodworking photography volunteering tutoring sailing yoga boxing
archery""".split()
FOODS = """ramen tacos curry paella sushi dumplings lasagna falafel pho risotto bibimbap
empanadas goulash shakshuka pierogi ceviche tagine biryani gnocchi moussaka""".split()
THINGS = """guitar bike laptop camera novel puzzle kayak tent violin sketchbook telescope
drone keyboard podcast garden apartment car puppy kitten aquarium""".split()
FILLER = """really pretty quite just also maybe actually still always never sometimes often
today tomorrow yesterday weekend morning evening night week month year lot little great good
nice fun hard busy tired happy excited nervous proud glad new old big small first last next
friend family work team class trip plan idea time place home school office park beach city
club group show game song movie book photo story project goal""".split()
TIMES = """last week|last month|two days ago|yesterday|this morning|last summer|in March|in
October|over the holidays|on Sunday|after work|before the trip""".replace("\n", " ").split("|")

TEMPLATES = [
    "I went {activity} in {place} {time} with {name}",
    "{name} told me about a great {food} place in {place}",
    "we finally bought a new {thing} {time}",
    "I have been {activity} a {filler} since {time}",
    "my {filler} {name} is moving to {place}",
    "honestly the {food} in {place} was {filler} {filler}",
    "I started a {filler} {activity} club with {name} and {name}",
    "can you remind me to call {name} about the {thing}",
    "{time} I felt {filler} about the {filler} {project}",
    "{name} and I are planning a {filler} trip to {place}",
    "I cooked {food} for {name} {time} and it was {filler}",
    "the {thing} broke again so I am {filler} {filler} annoyed",
    "we watched a {filler} show about {activity} in {place}",
    "my goal this {filler} is to get better at {activity}",
]


@dataclass(frozen=True, slots=True)
class Turn:
    scope: str
    session: str
    text: str


class Generator:
    """Synthetic turns; ``zipf`` skews word choice toward the head of each list."""

    def __init__(self, seed: int = 7, zipf: float = 1.1) -> None:
        self.rng = random.Random(seed)
        self.zipf = zipf
        self._weights: dict[int, list[float]] = {}

    def _pick(self, words: list[str]) -> str:
        weights = self._weights.get(id(words))
        if weights is None:
            weights = [1.0 / (rank ** self.zipf) for rank in range(1, len(words) + 1)]
            self._weights[id(words)] = weights
        return self.rng.choices(words, weights)[0]

    def clause(self) -> str:
        template = self.rng.choice(TEMPLATES)
        out = template
        for slot, words in (("{name}", NAMES), ("{place}", PLACES),
                            ("{activity}", ACTIVITIES), ("{food}", FOODS),
                            ("{thing}", THINGS), ("{filler}", FILLER),
                            ("{project}", FILLER)):
            while slot in out:
                out = out.replace(slot, self._pick(words), 1)
        return out.replace("{time}", self.rng.choice(TIMES))

    def sentence(self) -> str:
        clauses = [self.clause() for _ in range(self.rng.choices((1, 2, 3), (5, 3, 1))[0])]
        text = ", and ".join(clauses)
        return text[0].upper() + text[1:] + self.rng.choice((".", "!", "?", "."))

    def scope_sizes(self, total: int, scopes: int) -> list[int]:
        """Skewed sizes summing to ``total``: scope i gets a share proportional to 1/(i+1)."""
        shares = [1.0 / (i + 1) ** 0.8 for i in range(scopes)]
        norm = sum(shares)
        sizes = [max(1, int(total * s / norm)) for s in shares]
        sizes[0] += total - sum(sizes)
        return sizes

    def turns(self, total: int, scopes: int = 1, session_len: int = 20) -> Iterator[Turn]:
        for index, size in enumerate(self.scope_sizes(total, scopes)):
            for n in range(size):
                yield Turn(f"user-{index:05d}", f"s{n // session_len}", self.sentence())

    def queries(self, n: int) -> list[str]:
        asks = ["what did I say about {x}?", "when did I go {x}?", "who told me about {x}?",
                "{x}", "anything about {x} and {y}?"]
        out = []
        for _ in range(n):
            x = self._pick(self.rng.choice([ACTIVITIES, FOODS, PLACES, NAMES, THINGS]))
            y = self._pick(self.rng.choice([ACTIVITIES, FOODS, PLACES]))
            out.append(self.rng.choice(asks).format(x=x, y=y))
        return out
