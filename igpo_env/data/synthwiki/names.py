"""Pronounceable fictional names built from syllables, unique across a world, with deliberate near-duplicates.

:class:`NameGenerator` hands out name *roots* ("Karsel", "Velmora") that no other entity of the world uses, so an
entity's name identifies it. A share of the roots are near-duplicates of earlier ones ("Velmora" / "Velmara"): they
are different words for BM25 but look alike, the way real distractors do.

Example:
    >>> import random
    >>> gen = NameGenerator(random.Random(0))
    >>> a, b = gen.root(), gen.root()
    >>> a != b and a.isalpha() and a[0].isupper()
    True
"""

from __future__ import annotations

import random

from igpo_env._validation import check_number

__all__ = ["NameGenerator", "ONSETS", "VOWELS", "CODAS"]

ONSETS = (
    "b", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
    "b", "d", "k", "l", "m", "n", "r", "s", "t", "v", "br", "dr", "kr", "st", "th", "tr", "",
)  # fmt: skip
"""Syllable onsets (consonant clusters that start a syllable)."""

VOWELS = ("a", "e", "i", "o", "u", "a", "e", "o", "a", "e", "i", "o", "ei", "y")
"""Syllable nuclei (repeats make common vowels likelier)."""

CODAS = ("", "", "", "", "", "n", "r", "l", "s", "m", "k", "n", "r", "l", "nd", "st")
"""Syllable codas (empty codas are likelier so names stay pronounceable)."""

MIN_SYLLABLES = 2
MAX_SYLLABLES = 3
LONG_NAME_SYLLABLES = 4
"""Roots get 2-3 syllables; after many collisions the generator moves to 4 to keep finding unused names."""

MID_CODA_RATE = 0.15
"""Probability of a coda inside a word (codas close the last syllable more often)."""

THREE_SYLLABLE_RATE = 0.35
"""Share of 3-syllable roots (the rest have 2) while short names last."""

NEAR_DUPLICATE_RATE = 0.08
"""Share of roots derived from an earlier root by changing one letter."""

MAX_TRIES = 64
"""Attempts at a fresh root before lengthening the syllable count."""

_REPLACEMENTS = {"a": "eo", "e": "ai", "i": "ey", "o": "au", "u": "oa", "y": "i", "n": "mr", "r": "nl", "l": "rn"}


class NameGenerator:
    """Unique, pronounceable fictional name roots.

    Args:
        rng: The random source (seeded by the caller).
        near_duplicate_rate: Probability that a root is a one-letter variant of an earlier root.

    Example:
        >>> import random
        >>> gen = NameGenerator(random.Random(1))
        >>> names = [gen.root() for _ in range(200)]
        >>> len(set(names)) == 200
        True
    """

    def __init__(self, rng: random.Random, near_duplicate_rate: float = NEAR_DUPLICATE_RATE) -> None:
        check_number("near_duplicate_rate", near_duplicate_rate, minimum=0, maximum=1, strict="maximum")
        self.rng = rng
        self.near_duplicate_rate = near_duplicate_rate
        self.used: set[str] = set()
        self._recent: list[str] = []
        self._max_syllables = MAX_SYLLABLES

    def _syllables(self, n: int) -> str:
        rng = self.rng
        parts = []
        for i in range(n):
            onset = rng.choice(ONSETS)
            if i > 0 and not onset:
                onset = rng.choice(ONSETS[:-1])  # no vowel clash inside a word
            coda = rng.choice(CODAS) if i == n - 1 or rng.random() < MID_CODA_RATE else ""
            parts.append(onset + rng.choice(VOWELS) + coda)
        return "".join(parts).capitalize()

    def _near_duplicate(self) -> str | None:
        base = self.rng.choice(self._recent)
        positions = [i for i, c in enumerate(base.lower()) if c in _REPLACEMENTS and i > 0]
        if not positions:
            return None
        i = self.rng.choice(positions)
        c = base[i].lower()
        return base[:i] + self.rng.choice(_REPLACEMENTS[c]) + base[i + 1 :]

    def reserve(self, name: str) -> bool:
        """Mark ``name`` as used; returns False if it already was."""
        key = name.lower()
        if key in self.used:
            return False
        self.used.add(key)
        return True

    def root(self) -> str:
        """Return a fresh root: 2-3 syllables (more once short names run out), never returned before."""
        if self._recent and self.rng.random() < self.near_duplicate_rate:
            cand = self._near_duplicate()
            if cand and self.reserve(cand):
                return cand
        while True:
            for _ in range(MAX_TRIES):
                if self._max_syllables > MAX_SYLLABLES:
                    n = self.rng.randint(MIN_SYLLABLES, self._max_syllables)
                else:
                    n = MAX_SYLLABLES if self.rng.random() < THREE_SYLLABLE_RATE else MIN_SYLLABLES
                cand = self._syllables(n)
                if len(cand) >= 4 and self.reserve(cand):
                    if len(self._recent) < 4096:
                        self._recent.append(cand)
                    else:
                        self._recent[self.rng.randrange(len(self._recent))] = cand
                    return cand
            self._max_syllables = max(self._max_syllables + 1, LONG_NAME_SYLLABLES)
