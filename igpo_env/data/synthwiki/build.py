"""Build and export SynthWiki worlds: FlashRAG corpus + train/dev/test QA jsonl, streamed to disk.

Files written by :func:`build_world`:

- ``corpus.jsonl``: FlashRAG corpus records ``{"id", "contents"}`` with ``contents = "Title\\ntext"``.
- ``train.jsonl``, ``dev.jsonl``, ``test.jsonl``: FlashRAG QA records ``{"id", "question", "golden_answers",
  "metadata"}``; ``metadata`` holds ``data_source``, ``supporting_doc_ids``, ``hops`` and ``subject_entities``.
- ``world.json``: seed, sizes and counts (written last: its presence marks a complete world).

Example:
    >>> import tempfile
    >>> from igpo_env.data import load_qa
    >>> out = build_world(tempfile.mkdtemp(), passages=200, seed=0, verbose=False)
    >>> ex = load_qa(out, split="dev")[0]
    >>> ex.data_source.startswith("synthwiki-") and len(ex.supporting_doc_ids) >= 1
    True
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from igpo_env._validation import check_choice, check_int
from igpo_env.data.formats import save_corpus, save_flashrag_qa
from igpo_env.data.synthwiki.passages import PassageRenderer
from igpo_env.data.synthwiki.questions import KIND_WEIGHTS, QuestionGenerator
from igpo_env.data.synthwiki.splits import SPLIT_FRACTIONS, SPLITS, assign_splits
from igpo_env.data.synthwiki.world import MIN_PASSAGES, World, doc_id, generate_world
from igpo_env.types import Doc, QAExample

__all__ = [
    "DEFAULT_PASSAGES",
    "QUESTIONS_PER_PASSAGE",
    "GENERATOR_VERSION",
    "build_world",
    "default_world",
    "load_synthwiki",
    "to_dataset_dict",
]

logger = logging.getLogger(__name__)

DEFAULT_PASSAGES = 5000
"""Corpus size of the default world (the one the env, the tiny LM and the tests use)."""

QUESTIONS_PER_PASSAGE = 0.6
"""Questions generated per passage when ``questions`` is not given (5k passages -> 3k questions)."""

GENERATOR_VERSION = 3
"""Bumped whenever the generator's output changes, so cached default worlds are rebuilt."""

WORLD_FILE = "world.json"
CORPUS_FILE = "corpus.jsonl"


def _corpus(world: World, verbose: bool) -> Iterator[Doc]:
    from tqdm.auto import tqdm

    renderer = PassageRenderer(world)
    for pos in tqdm(range(world.n_passages), desc="passages", disable=not verbose, mininterval=1.0, unit="doc"):
        title, text = renderer.render(pos)
        yield Doc(doc_id(pos), title, text)


def _questions(world: World, split: str, n: int, counts: Counter, verbose: bool) -> Iterator[QAExample]:
    from tqdm.auto import tqdm

    gen = QuestionGenerator(world, split, seed=world.seed)
    rng = random.Random(f"synthwiki-kinds:{world.seed}:{split}")
    kinds, weights = list(KIND_WEIGHTS), list(KIND_WEIGHTS.values())
    misses = 0
    with tqdm(total=n, desc=f"{split} questions", disable=not verbose, mininterval=1.0, unit="q") as bar:
        while gen.count < n and misses < n + 100:
            ex = gen.generate(rng.choices(kinds, weights)[0])
            if ex is None:
                misses += 1
                continue
            counts[ex.data_source] += 1
            bar.update(1)
            yield ex
    if gen.count < n:
        logger.warning("split %s: only %d of %d questions found (the world is small)", split, gen.count, n)


def build_world(
    out_dir: str | os.PathLike[str],
    passages: int = DEFAULT_PASSAGES,
    seed: int = 0,
    verbose: bool = True,
    questions: int | None = None,
    timings: dict[str, float] | None = None,
) -> Path:
    """Generate a SynthWiki world and write it to ``out_dir`` (created if needed; existing files are overwritten).

    Args:
        out_dir: Output directory.
        passages: Number of corpus passages (>= 50).
        seed: Random seed; the same seed gives byte-identical files.
        verbose: Show tqdm progress bars.
        questions: Total questions over all splits; default ``round(passages * QUESTIONS_PER_PASSAGE)``.
        timings: If given, filled with the seconds spent per phase (``world``, ``corpus``, ``questions``).

    Returns:
        ``out_dir`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: for a bad ``passages``, ``seed`` or ``questions``.

    Example:
        >>> import tempfile
        >>> out = build_world(tempfile.mkdtemp(), passages=100, seed=3, verbose=False)
        >>> sorted(p.name for p in out.iterdir())
        ['corpus.jsonl', 'dev.jsonl', 'test.jsonl', 'train.jsonl', 'world.json']
    """
    passages = check_int("passages", passages, minimum=MIN_PASSAGES)
    seed = check_int("seed", seed)
    questions = check_int("questions", questions, minimum=0, optional=True)
    start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / WORLD_FILE).unlink(missing_ok=True)
    timings = {} if timings is None else timings
    world = generate_world(passages, seed)
    assign_splits(world)
    timings["world"] = time.perf_counter() - start
    save_corpus(_corpus(world, verbose), out / CORPUS_FILE)
    timings["corpus"] = time.perf_counter() - start - timings["world"]
    total = round(passages * QUESTIONS_PER_PASSAGE) if questions is None else questions
    per_split: dict[str, dict[str, int]] = {}
    for split in SPLITS:
        n = round(total * SPLIT_FRACTIONS[split])
        counts: Counter = Counter()
        save_flashrag_qa(_questions(world, split, n, counts, verbose), out / f"{split}.jsonl")
        per_split[split] = dict(sorted(counts.items()))
    timings["questions"] = time.perf_counter() - start - timings["world"] - timings["corpus"]
    meta = {
        "name": "synthwiki",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "passages": passages,
        "entities": world.counts(),
        "distractor_passages": len(world.distractors),
        "questions": {s: sum(c.values()) for s, c in per_split.items()},
        "questions_by_source": per_split,
        "files": [CORPUS_FILE, *(f"{s}.jsonl" for s in SPLITS)],
    }
    with (out / WORLD_FILE).open("w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2, sort_keys=True)
        f.write("\n")
    logger.info("built SynthWiki world (%d passages, seed %d) in %.1f s at %s", passages, seed,
                time.perf_counter() - start, out)  # fmt: skip
    return out


def default_world(seed: int = 0) -> Path:
    """Return the cached default world (:data:`DEFAULT_PASSAGES` passages) for ``seed``, building it on first use.

    The world is built in a temporary directory and renamed into place, so concurrent callers never see a
    half-written world.

    Example:
        >>> import os, tempfile
        >>> os.environ["IGPO_ENV_CACHE"] = tempfile.mkdtemp()
        >>> (default_world() / "corpus.jsonl").is_file()
        True
    """
    from igpo_env.cache import cache_dir

    seed = check_int("seed", seed)
    root = cache_dir("worlds")
    path = root / f"synthwiki-v{GENERATOR_VERSION}-s{seed}-n{DEFAULT_PASSAGES}"
    if (path / WORLD_FILE).is_file():
        return path
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=root))
    try:
        build_world(tmp, DEFAULT_PASSAGES, seed, verbose=False)
        if path.exists() and not (path / WORLD_FILE).is_file():
            shutil.rmtree(path, ignore_errors=True)  # left over from an interrupted build
        try:
            os.rename(tmp, path)
        except OSError:
            if not (path / WORLD_FILE).is_file():  # not a concurrent builder that won the race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def load_synthwiki(split: str = "train", seed: int = 0) -> list[QAExample]:
    """Questions of one split of the default world.

    Example:
        >>> import os, tempfile
        >>> os.environ["IGPO_ENV_CACHE"] = tempfile.mkdtemp()
        >>> ex = load_synthwiki("test")[0]
        >>> ex.supporting_doc_ids[0].startswith("sw-")
        True
    """
    check_choice("split", split, SPLITS)
    from igpo_env.data import load_qa

    return load_qa(default_world(seed), split=split)


def to_dataset_dict(world_dir: str | os.PathLike[str]) -> Any:
    """Load a world's splits as a ``datasets.DatasetDict`` (columns as :func:`igpo_env.data.to_dataset`).

    Example:
        >>> import tempfile
        >>> dd = to_dataset_dict(build_world(tempfile.mkdtemp(), passages=100, verbose=False))
        >>> sorted(dd)
        ['dev', 'test', 'train']
    """
    import datasets

    from igpo_env.data import load_qa, to_dataset

    world_dir = Path(world_dir)
    if not (world_dir / "train.jsonl").is_file():
        raise FileNotFoundError(f"{world_dir}: no train.jsonl; build a world with `igpo-env world build --out DIR`")
    return datasets.DatasetDict({s: to_dataset(load_qa(world_dir, split=s)) for s in SPLITS})
