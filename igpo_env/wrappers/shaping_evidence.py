"""StepSearch-style evidence reward: per search turn, the gain in TF-IDF similarity to the gold supporting passages.

After turn t, each gold supporting passage g has a best similarity ``m_t(g) = max(m_{t-1}(g), max_d cos(d, g))``
over the passages d retrieved so far (``m_0 = 0``); the evidence recall is ``E_t = mean_g m_t(g)``. A search turn
earns ``term_t = (E_t - E_{t-1}) - redundancy_coef * redundancy_t`` where ``redundancy_t`` is the share of the turn's
distinct retrieved passages that an earlier turn of the episode already retrieved. Other turns earn 0.

``cos`` is the cosine of TF-IDF vectors (scikit-learn's ``TfidfVectorizer`` with its defaults, fitted on the whole
corpus, so IDF is the corpus's) of the passages' ``"Title\\ntext"``.

Classes: :class:`EvidenceRecallWrapper` (``"evidence_recall"``), :class:`TfidfIndex`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from igpo_env._validation import check_number
from igpo_env.retrieval.base import DocStore, iter_docs
from igpo_env.wrappers.shaping import TurnShapingWrapper

__all__ = ["EvidenceRecallWrapper", "TfidfIndex", "DEFAULT_REDUNDANCY_COEF"]

logger = logging.getLogger(__name__)

DEFAULT_REDUNDANCY_COEF = 0.5
"""Weight of the redundancy share in :class:`EvidenceRecallWrapper` (our default)."""


class TfidfIndex:
    """TF-IDF vectors of a corpus's passages by id; cosine similarities between passages.

    The vectorizer (scikit-learn ``TfidfVectorizer``, default settings: lowercase, tokens of 2+ word characters,
    smoothed IDF, L2-normalized rows) is fitted on the whole corpus on first use; vectors are computed on demand.

    Args:
        store: The passages (a :class:`~igpo_env.retrieval.base.DocStore`, e.g. ``BM25Retriever.store``).

    Example:
        >>> from igpo_env.data.toy import toy_corpus
        >>> index = TfidfIndex(DocStore.from_docs(toy_corpus()))
        >>> sims = index.cosine(["t1", "t5"], ["t1"])
        >>> round(float(sims[0, 0]), 6), bool(0 < sims[1, 0] < 1)
        (1.0, True)
    """

    def __init__(self, store: DocStore) -> None:
        if not isinstance(store, DocStore):
            raise TypeError(f"`store` must be a DocStore, got {type(store).__name__}")
        self.store = store
        self._row = {doc_id: i for i, doc_id in enumerate(store.ids)}
        self._vectorizer: Any = None

    @classmethod
    def from_corpus(cls, corpus: str | os.PathLike[str] | Iterable[Any]) -> TfidfIndex:
        """Build from a FlashRAG corpus path or passage records (see :func:`~igpo_env.retrieval.base.iter_docs`)."""
        return cls(DocStore.from_docs(iter_docs(corpus)))

    def _fitted(self) -> Any:
        if self._vectorizer is None:
            from sklearn.feature_extraction.text import TfidfVectorizer

            logger.info("fitting TF-IDF on %d passages", len(self.store))
            self._vectorizer = TfidfVectorizer().fit(self.store.contents(i) for i in range(len(self.store)))
        return self._vectorizer

    def vectors(self, doc_ids: Sequence[str]) -> Any:
        """Return the TF-IDF rows (a scipy sparse matrix, L2-normalized) of ``doc_ids``.

        Raises:
            KeyError: naming an id that is not in the corpus.
        """
        rows = []
        for doc_id in doc_ids:
            if doc_id not in self._row:
                raise KeyError(f"passage id {doc_id!r} is not in the corpus ({len(self.store)} passages)")
            rows.append(self.store.contents(self._row[doc_id]))
        return self._fitted().transform(rows)

    def cosine(self, doc_ids: Sequence[str], other_ids: Sequence[str]) -> np.ndarray:
        """Return the ``len(doc_ids) x len(other_ids)`` matrix of TF-IDF cosines."""
        return np.asarray((self.vectors(doc_ids) @ self.vectors(other_ids).T).todense(), dtype=np.float64)


def _resolve_index(env: gym.Env, corpus: Any) -> TfidfIndex:
    """Return the TF-IDF index of ``corpus``, or of the env retriever's doc store when ``corpus`` is ``None``."""
    if isinstance(corpus, TfidfIndex):
        return corpus
    if corpus is not None:
        return TfidfIndex.from_corpus(corpus)
    retriever = getattr(env.unwrapped, "retriever", None)
    store = getattr(retriever, "store", None)
    if not isinstance(store, DocStore):
        raise ValueError(
            f"`evidence_recall` needs the passage texts, and the env's retriever ({type(retriever).__name__}) holds "
            "no doc store: pass `corpus=` (a FlashRAG corpus .jsonl path, Doc records or a TfidfIndex)"
        )
    return TfidfIndex(store)


class EvidenceRecallWrapper(TurnShapingWrapper, gym.utils.RecordConstructorArgs):
    """StepSearch-style turn reward: gain in TF-IDF evidence recall minus a redundancy penalty (module docstring).

    Needs the gold ``supporting_doc_ids`` on ``env.unwrapped`` (SynthWiki, or any dataset whose
    :class:`~igpo_env.types.QAExample` lists them) and the passage texts (the env retriever's doc store, as
    :class:`~igpo_env.retrieval.BM25Retriever` and the dense retriever hold, or ``corpus``).
    ``info["shaping"]["parts"] = {"recall_prev", "recall", "gain", "redundancy", "per_doc"}`` (``per_doc``: gold id
    -> best cosine so far).

    Args:
        env: A SearchQA-v0-like env (``info["retrieved_doc_ids"]``, ``info["action_type"]``).
        redundancy_coef: Weight of the redundancy share (>= 0).
        corpus: ``None`` (the env retriever's passages), a FlashRAG corpus path, passage records, or a
            :class:`TfidfIndex` (to share one fitted index between envs).

    Raises:
        ValueError: at construction when the env has no ``supporting_doc_ids`` or no passage texts; at reset when
            the question lists no supporting passages.

    Example:
        >>> import gymnasium as gym, igpo_env
        >>> from igpo_env.data.toy import toy_corpus, toy_qa
        >>> from igpo_env.retrieval import BM25Retriever
        >>> env = gym.make("SearchQA-v0", dataset=toy_qa(), retriever=BM25Retriever.from_docs(toy_corpus()), top_k=1)
        >>> env = EvidenceRecallWrapper(env, redundancy_coef=0.5)
        >>> _ = env.reset(options={"question_id": "tq0"})  # gold passage: t1 (Ostrand)
        >>> _, r, *_, info = env.step("<search>Ostrand country inhabitants</search>")  # retrieves t1
        >>> round(r, 6), info["retrieved_doc_ids"]
        (1.0, ['t1'])
        >>> _, r, *_, info = env.step("<search>Ostrand country inhabitants</search>")  # t1 again: no gain, redundant
        >>> round(r, 6), info["shaping"]["parts"]["redundancy"]
        (-0.5, 1.0)

    Change logs:
        v0.2.0: added.
    """

    def __init__(self, env: gym.Env, redundancy_coef: float = DEFAULT_REDUNDANCY_COEF, corpus: Any = None) -> None:
        redundancy_coef = check_number("redundancy_coef", redundancy_coef, minimum=0.0)
        if not hasattr(type(env.unwrapped), "supporting_doc_ids"):
            raise ValueError(
                f"`evidence_recall` needs gold `supporting_doc_ids` on env.unwrapped, and "
                f"{type(env.unwrapped).__name__} has none: use SearchQA-v0 on a dataset that lists them (SynthWiki)"
            )
        gym.utils.RecordConstructorArgs.__init__(
            self, redundancy_coef=redundancy_coef, corpus=corpus, _disable_deepcopy=True
        )
        TurnShapingWrapper.__init__(self, env, scheme="evidence_recall")
        self.redundancy_coef = redundancy_coef
        self.index = _resolve_index(env, corpus)
        """The TF-IDF index the cosines come from."""
        self._gold: tuple[str, ...] = ()
        self._best = np.zeros(0)
        self._seen: set[str] = set()

    def reset_parts(self, info: dict[str, Any]) -> dict[str, Any]:
        """Read the question's gold passages; nothing retrieved yet."""
        gold = tuple(dict.fromkeys(self.env.unwrapped.supporting_doc_ids))
        if not gold:
            raise ValueError(
                f"question {info.get('question_id')!r} lists no supporting_doc_ids; `evidence_recall` needs a "
                "dataset whose questions name their gold passages (QAExample.supporting_doc_ids, e.g. SynthWiki)"
            )
        self.index.vectors(gold)  # fail now, naming a gold id missing from the corpus
        self._gold, self._best, self._seen = gold, np.zeros(len(gold)), set()
        return self._parts(0.0, 0.0, 0.0)

    def _parts(self, prev: float, gain: float, redundancy: float) -> dict[str, Any]:
        per_doc = {g: float(b) for g, b in zip(self._gold, self._best, strict=True)}
        recall = float(self._best.mean())
        return {"recall_prev": prev, "recall": recall, "gain": gain, "redundancy": redundancy, "per_doc": per_doc}

    def turn_reward(
        self, obs: str, info: dict[str, Any], terminated: bool, truncated: bool
    ) -> tuple[float, dict[str, Any]]:
        """Recall gain minus ``redundancy_coef`` times the redundant share, on a search turn; 0 otherwise."""
        prev = float(self._best.mean())
        turn_ids = list(dict.fromkeys(info.get("retrieved_doc_ids") or ()))
        if info.get("action_type") != "search" or not turn_ids:
            return 0.0, self._parts(prev, 0.0, 0.0)
        redundancy = sum(d in self._seen for d in turn_ids) / len(turn_ids)
        self._seen.update(turn_ids)
        self._best = np.maximum(self._best, self.index.cosine(turn_ids, self._gold).max(axis=0))
        gain = float(self._best.mean()) - prev
        return gain - self.redundancy_coef * redundancy, self._parts(prev, gain, redundancy)
