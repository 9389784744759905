"""Train / dev / test splits by subject entity: no entity named in a dev or test question is named in a train one.

Example:
    >>> from igpo_env.data.synthwiki.world import generate_world
    >>> w = generate_world(200, seed=0)
    >>> assign_splits(w)
    >>> sorted({e.split for e in w.entities})
    ['dev', 'test', 'train']
"""

from __future__ import annotations

import random

from igpo_env.data.synthwiki.world import World

__all__ = ["SPLITS", "SPLIT_FRACTIONS", "assign_splits"]

SPLITS = ("train", "dev", "test")
SPLIT_FRACTIONS = {"train": 0.8, "dev": 0.1, "test": 0.1}
"""Share of entities (per type) whose questions go to each split; question counts follow the same shares."""


def assign_splits(world: World, fractions: dict[str, float] | None = None) -> None:
    """Set :attr:`Entity.split` for every entity, type by type, from the world's seed.

    Each type's entities are shuffled and cut by ``fractions``, so every split sees every type in proportion.

    Args:
        world: The world to split (modified in place).
        fractions: Share per split; defaults to :data:`SPLIT_FRACTIONS`. Must cover exactly :data:`SPLITS` and sum
            to 1.

    Raises:
        ValueError: for bad ``fractions``.
    """
    fractions = dict(SPLIT_FRACTIONS if fractions is None else fractions)
    if set(fractions) != set(SPLITS) or any(f < 0 for f in fractions.values()):
        raise ValueError(f"`fractions` must map each of {SPLITS} to a share >= 0, got {fractions}")
    if abs(sum(fractions.values()) - 1.0) > 1e-6:
        raise ValueError(f"`fractions` must sum to 1, got {sum(fractions.values())}")
    rng = random.Random(f"synthwiki-splits:{world.seed}")
    for etype in sorted(world.by_type):
        idxs = list(world.by_type[etype])
        rng.shuffle(idxs)
        n = len(idxs)
        n_dev = round(n * fractions["dev"])
        n_test = round(n * fractions["test"])
        for k, i in enumerate(idxs):
            world.entities[i].split = "dev" if k < n_dev else "test" if k < n_dev + n_test else "train"
