"""Scripted SFT data: episodes of the oracle / noisy-oracle agents in SearchQA-v0 and short reading transcripts.

Used by the warm start (:mod:`agents.bootstrap.warm_start`) and by the tiny fixture build
(:mod:`agents.bootstrap.build`).

Example:
    >>> msgs = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "<search> a </search>"},
    ...         {"role": "user", "content": "obs"}, {"role": "assistant", "content": "<answer> b </answer>"}]
    >>> mistake_flags(msgs, [False, True])
    [False, False, False, True]
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from igpo_env._validation import check_fraction
from igpo_env.types import Message

__all__ = [
    "Trajectory",
    "AnswerFormatMix",
    "EpisodeRenamer",
    "collect_trajectories",
    "mistake_flags",
    "reading_transcripts",
    "WORD_RE",
]

WORD_RE = re.compile(r"[^\W\d_]+")
"""A word: a run of letters."""

READING_FACTS_PER_ROW = 6
"""Most fact statements in one reading row."""


@dataclass
class Trajectory:
    """One scripted episode ready for SFT.

    Attributes:
        messages: The full transcript, ending with the final assistant turn.
        mistakes: Per assistant turn, True when it is a mistaken action (excluded from the loss).
        agent: Which scripted agent played it (``"oracle"`` or ``"noisy"``).
        f1: Outcome F1 of the episode.
    """

    messages: list[Message]
    mistakes: list[bool]
    agent: str
    f1: float


def mistake_flags(messages: Sequence[Message], mistakes: Sequence[bool]) -> list[bool]:
    """Spread per-assistant-turn mistake flags over all messages (non-assistant messages are never masked)."""
    flags: list[bool] = []
    it = iter(mistakes)
    for m in messages:
        flags.append(bool(next(it, False)) if m["role"] == "assistant" else False)
    return flags


class AnswerFormatMix:
    """Wraps a scripted agent and rewrites a share of its answer actions into the IGPO pseudo-response form.

    The scripted agents answer ``<think>...</think>\\n<answer> X </answer>``; the IG scorer asks for
    ``<think>\\nNow there's enough information to answer\\n</think>\\n<answer>\\nX\\n</answer>``. Training on both
    forms makes ``p(gold | transcript)`` under the scoring template meaningful. Mistake flags pass through unchanged.

    Args:
        agent: A scripted agent (``act``, ``reset``, ``last_mistake``).
        share: Probability of rewriting an answer action.
        seed: Seed of the rewrite draws.

    Example:
        >>> class Fixed:
        ...     last_mistake = False
        ...     def reset(self, seed=None): pass
        ...     def act(self, obs, info): return "<think>So.</think> <answer> Karsel </answer>"
        >>> print(AnswerFormatMix(Fixed(), share=1.0).act("", {}))
        <think>
        Now there's enough information to answer
        </think>
        <answer>
        Karsel
        </answer>
    """

    def __init__(self, agent: Any, share: float, seed: int = 0) -> None:
        check_fraction("share", share)
        import numpy as np

        self.agent = agent
        self.share = share
        self.rng = np.random.default_rng(seed)

    @property
    def last_mistake(self) -> bool:
        """Whether the wrapped agent's last action was a deliberate mistake."""
        return bool(getattr(self.agent, "last_mistake", False))

    def reset(self, seed: int | None = None) -> None:
        """Reset the wrapped agent."""
        self.agent.reset(seed)

    def act(self, observation: str, info: dict[str, Any]) -> str:
        """Return the wrapped agent's action, its answer possibly rewritten into the IG pseudo-response form."""
        from igpo_env.metrics import extract_answer
        from igpo_env.scoring.templates import IGPO_TEMPLATE

        action = self.agent.act(observation, info)
        answer = extract_answer(action) if "<answer>" in action else None
        if answer is not None and self.rng.random() < self.share:
            t = IGPO_TEMPLATE
            action = f"{t.think}{t.pseudo_response}{answer.strip()}{t.answer_close}"
        return action


YEAR_RE = re.compile(r"(?<![\d,])1\d{3}(?!\d)(?!,\d)")
"""A year as SynthWiki writes it: four digits starting with 1, not part of a comma-grouped number."""

GROUPED_NUMBER_RE = re.compile(r"(?<![\d,])\d{1,3}(?:,\d{3})+(?!\d)")
"""A comma-grouped number (``237,531``): populations, employee counts, lengths."""

YEAR_SHIFT = 60
"""Renamed episodes shift every year by one draw from ``[-YEAR_SHIFT, YEAR_SHIFT]`` (order is kept)."""

NUMBER_SCALE = (1.05, 1.8)
"""Renamed episodes scale every comma-grouped number by one draw from this range (order is kept, and they stay
above the ungrouped numbers below 1,000)."""


class EpisodeRenamer:
    """Gives each scripted episode fresh names and numbers, so its facts cannot be recalled from earlier episodes.

    The 2,400 train questions of a default world are played ~3 times each, and every passage comes back ~10 times,
    so a small LM fits the transcripts by memorizing the corpus (loss ~0.4 nats/token) and never learns to read: its
    in-context copy of a number written ten tokens earlier stays at chance. Renaming makes reading the only way to
    predict a name or a number. Per episode, every generated name root of the world (``Krostfa``, ``Thahokrond``,
    never a template word such as ``Press`` or ``University``) is mapped to a distinct random root of a train-split
    entity (never a word of a dev or test entity's name), every year is shifted by one offset and every
    comma-grouped number scaled by one factor, so comparisons keep their answers. The same map is applied to every
    message, the answer included.

    Args:
        world: A SynthWiki world directory (world.json).
        seed: Seed of the draws.

    Example:
        >>> import tempfile
        >>> from igpo_env.data.synthwiki import build_world
        >>> world = build_world(tempfile.mkdtemp(), passages=200, seed=0, verbose=False)
        >>> r = EpisodeRenamer(world, seed=0)
        >>> e = next(e for e in r.entities if e.split == "train" and e.etype == "city")
        >>> msgs = [{"role": "user", "content": f"Where is {e.name}? Founded in 1743; 2,100 people."}]
        >>> out = r.rename(msgs)[0]["content"]
        >>> e.name in out, "1743" in out, "2,100" in out
        (False, False, False)
    """

    def __init__(self, world: Path, seed: int = 0) -> None:
        import random

        w = _split_world(world)
        self.entities = w.entities
        template_words = _template_words()
        roots: dict[str, set[str]] = {}
        for e in w.entities:
            for name in (e.name, *e.aliases):
                for word in WORD_RE.findall(name):
                    if word[0].isupper() and word not in template_words:
                        roots.setdefault(word, set()).add(e.split)
        self.roots = frozenset(roots)
        self.pool = sorted(word for word, splits in roots.items() if splits == {"train"})
        if len(self.pool) < 2:
            raise ValueError(f"world {world} has too few train-only name roots to rename episodes")
        self.rng = random.Random(f"rename:{seed}")

    def rename(self, messages: Sequence[Message]) -> list[Message]:
        """Return ``messages`` with one fresh draw of names, year offset and number scale applied to all of them."""
        text = "\n".join(m["content"] for m in messages)
        present = sorted({w for w in WORD_RE.findall(text) if w in self.roots})
        images = self.rng.sample(self.pool, min(len(present), len(self.pool)))
        names = dict(zip(present, images, strict=False))
        shift = self.rng.randint(-YEAR_SHIFT, YEAR_SHIFT)
        scale = self.rng.uniform(*NUMBER_SCALE)

        def grouped(m: re.Match[str]) -> str:
            return f"{round(int(m.group().replace(',', '')) * scale):,}"

        def one(content: str) -> str:
            content = WORD_RE.sub(lambda m: names.get(m.group(), m.group()), content)
            content = YEAR_RE.sub(lambda m: str(int(m.group()) + shift), content)
            return GROUPED_NUMBER_RE.sub(grouped, content)

        return [{**m, "content": one(m["content"])} for m in messages]


def _split_world(world: Path) -> Any:
    """Regenerate the in-memory ``World`` of a SynthWiki world directory (from its world.json), splits assigned."""
    from igpo_env.data.synthwiki.build import WORLD_FILE
    from igpo_env.data.synthwiki.splits import assign_splits
    from igpo_env.data.synthwiki.world import generate_world

    meta = json.loads((Path(world) / WORLD_FILE).read_text())
    w = generate_world(int(meta["passages"]), int(meta["seed"]))
    assign_splits(w)
    return w


def _template_words() -> frozenset[str]:
    """Capitalized words written in SynthWiki's source (templates, word lists): never renamed."""
    import igpo_env.data.synthwiki as synthwiki

    words: set[str] = set()
    for path in Path(synthwiki.__file__).parent.glob("*.py"):
        words.update(w for w in WORD_RE.findall(path.read_text()) if w[0].isupper())
    return frozenset(words)


def collect_trajectories(
    world: Path,
    n: int,
    noisy_fraction: float,
    seed: int,
    ig_answer_share: float = 0.5,
    verbose: bool = True,
    rename_share: float = 0.0,
) -> list[Trajectory]:
    """Play ``n`` train-split episodes with the scripted oracle / noisy-oracle agents in SearchQA-v0.

    Args:
        world: A SynthWiki world directory (corpus.jsonl + train.jsonl).
        n: Episodes to play (questions are drawn in a seeded order, cycling through the train split).
        noisy_fraction: Share of episodes played by the noisy oracle.
        seed: Seed of the question order and of the agents.
        ig_answer_share: Share of answers written in the IG pseudo-response form (see :class:`AnswerFormatMix`).
        verbose: Show a progress bar.
        rename_share: Share of episodes given fresh names and numbers afterwards (see :class:`EpisodeRenamer`).
    """
    check_fraction("rename_share", rename_share)
    import gymnasium as gym
    import numpy as np
    from tqdm.auto import tqdm

    from agents.scripted import NoisyOracleAgent, OracleAgent, run_episode
    from igpo_env.data import load_qa
    from igpo_env.retrieval import get_retriever

    examples = load_qa(world, "train")
    retriever = get_retriever(str(world / "corpus.jsonl"))
    env = gym.make("SearchQA-v0", dataset=examples, retriever=retriever)
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(len(examples)) for _ in range(math.ceil(n / len(examples)))])[:n]
    noisy = rng.random(n) < noisy_fraction
    renamed = rng.random(n) < rename_share
    renamer = EpisodeRenamer(world, seed) if rename_share > 0 else None
    agents = {
        "oracle": AnswerFormatMix(OracleAgent(env), ig_answer_share, seed),
        "noisy": AnswerFormatMix(NoisyOracleAgent(env, seed=seed), ig_answer_share, seed + 1),
    }
    out: list[Trajectory] = []
    for i in tqdm(range(n), desc="scripted episodes", disable=not verbose):
        name = "noisy" if noisy[i] else "oracle"
        ep = run_episode(env, agents[name], seed=None, options={"index": int(order[i])})
        messages = renamer.rename(ep.messages) if renamer is not None and renamed[i] else list(ep.messages)
        out.append(Trajectory(messages, list(ep.mistakes), name, float(ep.final_info.get("f1", 0.0))))
    env.close()
    return out


def reading_transcripts(world: Path, n: int, seed: int, verbose: bool = True) -> list[list[Message]]:
    """Short "reading" transcripts: a one-hop question with its search result, then the facts read from it.

    Each transcript is a user turn ``Question: <one-hop question>`` followed by the observation of the matching fact
    query (``"<entity> <relation>"``, top-3 passages from the world's BM25 index, formatted as SearchQA-v0 returns
    them), and an assistant turn ``<think>The <relation> of <entity> is <value>. ... So the answer is X.</think>``
    ``<answer> X </answer>`` whose thought states up to :data:`READING_FACTS_PER_ROW` facts of the returned passages
    (the asked one last). These are the lookups a search episode needs (find the entity's passage, the relation's
    sentence, copy the value), several per ~300 tokens instead of one or two per ~450-token episode. Only facts of
    train-split entities are asked or stated, so no dev or test question's subject is ever a training target.

    Args:
        world: A SynthWiki world directory (world.json + corpus.jsonl).
        n: Transcripts to make (fact queries are drawn without replacement while there are enough facts).
        seed: Seed of the draws.
        verbose: Show a progress bar.

    Example:
        >>> import tempfile
        >>> from igpo_env.data.synthwiki import build_world
        >>> world = build_world(tempfile.mkdtemp(), passages=100, seed=0, verbose=False)
        >>> rows = reading_transcripts(world, 2, seed=0, verbose=False)
        >>> [m["role"] for m in rows[0]], rows[0][1]["content"].startswith("<think>The ")
        (['user', 'assistant'], True)
    """
    import random

    from tqdm.auto import tqdm

    from agents.scripted import _found, _hop_query, format_answer
    from igpo_env.actions import format_observation
    from igpo_env.data.synthwiki.passages import subject_name, value_forms
    from igpo_env.data.synthwiki.questions import QUESTIONS, _capitalize
    from igpo_env.data.synthwiki.world import doc_id
    from igpo_env.retrieval import get_retriever

    w = _split_world(world)
    rng = random.Random(f"reading:{seed}")
    facts: list[tuple[str, dict[str, str]]] = []
    by_doc: dict[str, list[dict[str, str]]] = {}
    for e in w.entities:
        if e.split != "train":
            continue
        for etype, relation in QUESTIONS:
            if etype == e.etype and e.attrs.get(relation) is not None:
                hop = {"entity": e.name, "relation": relation, "answer": value_forms(w, e, relation)[0]}
                question = _capitalize(rng.choice(QUESTIONS[(etype, relation)]).format(s=subject_name(e)))
                facts.append((question, hop))
                by_doc.setdefault(doc_id(e.fact_doc(relation)), []).append(hop)
    order = [i for _ in range(math.ceil(n / max(1, len(facts)))) for i in rng.sample(range(len(facts)), len(facts))]
    picks = [facts[i] for i in order[:n]]
    retriever = get_retriever(str(Path(world) / "corpus.jsonl"))
    out: list[list[Message]] = []
    batch = 256
    for start in tqdm(range(0, len(picks), batch), desc="reading rows", disable=not verbose):
        chunk = picks[start : start + batch]
        queries = [_hop_query(hop) for _, hop in chunk]
        for (question, asked), query, docs in zip(chunk, queries, retriever.search(queries, 3), strict=True):
            others = [h for d in docs for h in by_doc.get(d.id, []) if h is not asked]
            rng.shuffle(others)
            stated = [*others[: READING_FACTS_PER_ROW - 1], asked]
            think = " ".join(_found(h) for h in stated) + f" So the answer is {asked['answer']}."
            obs = format_observation([query], [docs])
            out.append(
                [
                    {"role": "user", "content": f"Question: {question}{obs}"},
                    {"role": "assistant", "content": format_answer(asked["answer"], think)},
                ]
            )
    return out
