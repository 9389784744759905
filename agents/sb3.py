"""A stable-baselines3 agent on SearchQA-v0: MaskablePPO over candidate actions, outcome-only or IG rewards.

The agent is not an LLM: it picks one of the candidate actions of
:class:`~igpo_env.wrappers.discrete.CandidateActionWrapper` (search / answer a phrase of the question or of the last
passages) from sentence embeddings and phrase features. It trains with sb3-contrib's ``MaskablePPO`` (plain SB3
``PPO`` with ``masking=False``) on an SB3 ``VecEnv``:

- ``vec_env="candidate"`` (default): :class:`agents.sb3_env.CandidateVecEnv` over
  :class:`~igpo_env.envs.vector.SearchQAVectorEnv` (one batched search per step), with
  :class:`~igpo_env.wrappers.vector.information_gain.InformationGainVectorWrapper` for ``reward="ig"`` (one batched
  IG scoring call per step, by the packaged SmolLM2-135M-Instruct unless ``scorer`` names another model);
- ``vec_env="dummy"`` / ``"subproc"``: SB3's ``make_vec_env`` of single envs
  ``CandidateActionWrapper(InformationGainWrapper(SearchQA-v0))`` (``DummyVecEnv`` / ``SubprocVecEnv``).

Both reward schemes use the same envs, policy and seeds; ``reward="outcome"`` leaves the IG wrapper out. Every
``eval_freq`` env steps the dev F1 (:func:`agents.sb3_env.evaluate_candidates`) is logged (TensorBoard
``eval/dev_f1``) and kept as a curve. The command: ``igpo-env sb3 train`` (:mod:`agents.sb3_cli`, flags generated
from :class:`SB3Config`).

Example:
    >>> config = SB3Config(reward="outcome", total_timesteps=64)
    >>> config.output_dir, config.policy_kwargs_summary()
    ('runs/sb3-outcome-seed0', 'MultiInputPolicy + CandidateExtractor')
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from igpo_env._validation import check_choice, check_int, check_number

__all__ = [
    "SB3Config",
    "TrainResult",
    "REWARDS",
    "VEC_ENVS",
    "POLICIES",
    "hf_scorer",
    "load_questions",
    "make_train_env",
    "make_eval_env",
    "make_model",
    "train",
]

logger = logging.getLogger(__name__)

REWARDS = ("outcome", "ig")
"""``outcome``: the env's F1 on the answering turn only; ``ig``: plus IGPO's information gain on every other turn."""

VEC_ENVS = ("candidate", "dummy", "subproc")
"""SB3 vector envs: batched :class:`agents.sb3_env.CandidateVecEnv`, or ``make_vec_env`` with Dummy/SubprocVecEnv."""

POLICIES = ("candidate", "mlp")
"""``candidate``: ``MultiInputPolicy`` with :class:`agents.sb3_env.CandidateExtractor` (per-phrase weights shared
across slots) on ``Dict`` observations; ``mlp``: SB3's ``MlpPolicy`` on the flat ``Box``."""

DEFAULT_DATA_SOURCES = "synthwiki-1hop,synthwiki-2hop"
DEFAULT_OUTPUT_DIR = "runs/sb3-{reward}-seed{seed}"


@dataclass
class SB3Config:
    """Everything ``igpo-env sb3 train`` runs; each field is a flag (``--total-timesteps`` / ``--total_timesteps``)."""

    reward: str = field(
        default="ig", metadata={"help": "outcome or ig (outcome + IGPO information gain).", "choices": REWARDS}
    )
    ig_coef: float = field(default=1.0, metadata={"help": "Weight of the IG turn reward (reward=ig)."})
    ig_mode: str = field(default="prob_diff", metadata={"help": "IG mode: prob_diff (IGPO) or log_prob_diff."})
    scorer: str | None = field(
        default=None,
        metadata={"help": "IG scorer: a model directory or packaged name (None: the packaged SmolLM2-135M-Instruct)."},
    )
    scorer_dtype: str = field(
        default="bfloat16",
        metadata={"help": "Scorer dtype (bfloat16: ~2x faster on CPUs with native bf16; float32 on CPUs without)."},
    )
    ig_memo: str = field(
        default="observations",
        metadata={
            "help": "Remember IG scores per state: transcript (exact), observations (question + retrieved passages, "
            "ignoring search wording and order) or none.",
            "choices": ("transcript", "observations", "none"),
        },
    )
    dataset: str | None = field(
        default=None, metadata={"help": "World / FlashRAG directory (None: default SynthWiki)."}
    )
    train_split: str = field(default="train", metadata={"help": "Split trained on."})
    eval_split: str = field(default="dev", metadata={"help": "Split of the dev F1."})
    data_sources: str = field(
        default=DEFAULT_DATA_SOURCES, metadata={"help": "Comma-separated data sources kept ('' keeps all)."}
    )
    max_train_questions: int | None = field(default=300, metadata={"help": "First N train questions (None: all)."})
    max_eval_questions: int | None = field(default=100, metadata={"help": "First N dev questions (None: all)."})
    encoder: str | None = field(
        default=None, metadata={"help": "Sentence encoder directory (None: the packaged all-MiniLM-L6-v2)."}
    )
    num_question_phrases: int = field(default=3, metadata={"help": "Question phrase slots."})
    num_observation_phrases: int = field(default=8, metadata={"help": "Observation phrase slots."})
    mask_repeated_searches: bool = field(default=True, metadata={"help": "Mask searches already made."})
    masking: bool = field(default=True, metadata={"help": "MaskablePPO with action masks (False: plain PPO)."})
    policy: str = field(default="candidate", metadata={"help": "candidate or mlp.", "choices": POLICIES})
    num_envs: int = field(default=8, metadata={"help": "Parallel episodes."})
    vec_env: str = field(default="candidate", metadata={"help": "candidate, dummy or subproc.", "choices": VEC_ENVS})
    max_episode_steps: int = field(default=4, metadata={"help": "Turn limit per episode."})
    total_timesteps: int = field(default=20_000, metadata={"help": "Env steps to train for (all envs together)."})
    n_steps: int = field(default=32, metadata={"help": "PPO rollout length per env."})
    batch_size: int = field(default=64, metadata={"help": "PPO minibatch size."})
    n_epochs: int = field(default=10, metadata={"help": "PPO epochs per rollout."})
    learning_rate: float = field(default=5e-4, metadata={"help": "Adam learning rate."})
    gamma: float = field(default=0.99, metadata={"help": "Discount factor."})
    gae_lambda: float = field(default=0.95, metadata={"help": "GAE lambda."})
    ent_coef: float = field(default=0.02, metadata={"help": "Entropy bonus."})
    eval_freq: int = field(default=2_000, metadata={"help": "Env steps between dev F1 evaluations (0: end only)."})
    seed: int = field(default=0, metadata={"help": "Seed of the envs, the policy and the sampling."})
    output_dir: str = field(
        default=DEFAULT_OUTPUT_DIR, metadata={"help": "Where the model, curve and logs go ({reward}, {seed} filled)."}
    )
    tensorboard: bool = field(default=True, metadata={"help": "Write TensorBoard logs under output_dir/tb."})
    progress_bar: bool = field(default=True, metadata={"help": "Show a progress bar."})
    threads: int | None = field(default=1, metadata={"help": "torch CPU threads (None: torch's default)."})

    def __post_init__(self) -> None:
        check_choice("reward", self.reward, REWARDS)
        check_choice("policy", self.policy, POLICIES)
        check_choice("vec_env", self.vec_env, VEC_ENVS)
        check_choice("ig_memo", self.ig_memo, ("transcript", "observations", "none"))
        check_number("ig_coef", self.ig_coef, minimum=0)
        for name in ("num_envs", "max_episode_steps", "total_timesteps", "n_steps", "batch_size", "n_epochs"):
            check_int(name, getattr(self, name), minimum=1)
        check_int("num_question_phrases", self.num_question_phrases, minimum=1)
        check_int("num_observation_phrases", self.num_observation_phrases, minimum=0)
        check_int("eval_freq", self.eval_freq, minimum=0)
        check_int("max_train_questions", self.max_train_questions, minimum=1, optional=True)
        check_int("max_eval_questions", self.max_eval_questions, minimum=1, optional=True)
        check_int("threads", self.threads, minimum=1, optional=True)
        check_number("learning_rate", self.learning_rate, minimum=0, strict=True)
        check_number("gamma", self.gamma, minimum=0, maximum=1)
        check_number("gae_lambda", self.gae_lambda, minimum=0, maximum=1)
        check_number("ent_coef", self.ent_coef, minimum=0)
        self.output_dir = self.output_dir.format(reward=self.reward, seed=self.seed)

    @property
    def observation_format(self) -> str:
        """``dict`` for the candidate policy, ``box`` for the MLP."""
        return "dict" if self.policy == "candidate" else "box"

    def policy_kwargs_summary(self) -> str:
        """Name the SB3 policy this config builds."""
        return "MultiInputPolicy + CandidateExtractor" if self.policy == "candidate" else "MlpPolicy"


class TrainResult(NamedTuple):
    """What :func:`train` returns."""

    model: Any
    """The trained (Maskable)PPO model."""
    curve: list[dict[str, float]]
    """Dev evaluations: ``{"timesteps", "f1", "em", "answered", "mean_turns", "by_source"}`` each."""
    scorer: Any
    """The IG scorer used (a :class:`agents.sb3_env.MemoScorer` when memoized; ``None`` for outcome rewards)."""


def load_questions(
    config: SB3Config, split: str, limit: int | None, dataset: Any = None
) -> tuple[list[Any], Path | None]:
    """Return the first ``limit`` questions of ``split`` with a data source in ``config.data_sources``, and the corpus.

    ``dataset`` (any :class:`~igpo_env.envs.search_qa.SearchQAEnv` dataset, e.g. a list of examples) replaces
    ``config.dataset``.

    Raises:
        ValueError: if no question is left.
    """
    from igpo_env.envs.search_qa import resolve_dataset

    examples, corpus = resolve_dataset(config.dataset if dataset is None else dataset, split)
    sources = {s.strip() for s in config.data_sources.split(",") if s.strip()}
    kept = [ex for ex in examples if not sources or ex.data_source in sources][:limit]
    if not kept:
        raise ValueError(f"no {split} question has a data source in {sorted(sources)}: check `data_sources`")
    return kept, corpus


def hf_scorer(config: SB3Config) -> Any:
    """Return the IG scorer of ``config`` before any memo: an ``HFScorer`` of ``config.scorer``.

    ``config.scorer`` defaults to the packaged model; ``scorer_dtype`` is kept float32 on a CPU without native bf16
    (:func:`igpo_env._hardware.effective_dtype`).

    Example:
        >>> hf_scorer(SB3Config(scorer="smollm2-135m-instruct")).dtype  # doctest: +SKIP
        'float32'
    """
    from igpo_env._hardware import effective_dtype
    from igpo_env.models import DEFAULT_MODEL
    from igpo_env.scoring.hf import HFScorer

    return HFScorer(config.scorer or DEFAULT_MODEL, dtype=effective_dtype(config.scorer_dtype, "auto"))


def _ig_scorer(config: SB3Config) -> Any:
    from agents.sb3_env import MemoScorer

    scorer = hf_scorer(config)
    return scorer if config.ig_memo == "none" else MemoScorer(scorer, key=config.ig_memo)


def make_train_env(config: SB3Config, examples: Sequence[Any], retriever: Any, encoder: Any, scorer: Any) -> Any:
    """Build the SB3 ``VecEnv`` of ``config.vec_env`` (with IG from ``scorer`` when ``config.reward == "ig"``)."""
    import gymnasium as gym
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecMonitor

    from agents.sb3_env import CandidateVecEnv
    from igpo_env.envs.vector import SearchQAVectorEnv
    from igpo_env.wrappers import CandidateActionWrapper, InformationGainWrapper
    from igpo_env.wrappers.vector.information_gain import InformationGainVectorWrapper

    ig = config.reward == "ig"
    ig_kwargs = {"mode": config.ig_mode, "ig_coef": config.ig_coef}
    cand_kwargs = {
        "num_question_phrases": config.num_question_phrases,
        "num_observation_phrases": config.num_observation_phrases,
        "observation_format": config.observation_format,
        "mask_repeated_searches": config.mask_repeated_searches,
    }
    if config.vec_env == "candidate":
        text_env = SearchQAVectorEnv(
            config.num_envs, config.max_episode_steps, dataset=list(examples), retriever=retriever
        )
        if ig:
            text_env = InformationGainVectorWrapper(text_env, scorer, **ig_kwargs)
        venv = CandidateVecEnv(text_env, encoder, **cand_kwargs)
        venv.seed(config.seed)
        return VecMonitor(venv)

    def env_fn() -> gym.Env:
        env = gym.make(
            "SearchQA-v0", dataset=list(examples), retriever=retriever, max_episode_steps=config.max_episode_steps
        )
        return CandidateActionWrapper(
            InformationGainWrapper(env, scorer, **ig_kwargs) if ig else env, encoder, **cand_kwargs
        )

    vec_cls = DummyVecEnv if config.vec_env == "dummy" else SubprocVecEnv
    return make_vec_env(env_fn, n_envs=config.num_envs, seed=config.seed, vec_env_cls=vec_cls)


def make_eval_env(config: SB3Config, examples: Sequence[Any], retriever: Any, encoder: Any) -> Any:
    """Build one :class:`~igpo_env.wrappers.CandidateActionWrapper` env over the dev questions (no IG)."""
    import gymnasium as gym

    from igpo_env.wrappers import CandidateActionWrapper

    env = gym.make(
        "SearchQA-v0", dataset=list(examples), retriever=retriever, max_episode_steps=config.max_episode_steps
    )
    return CandidateActionWrapper(
        env,
        encoder,
        config.num_question_phrases,
        config.num_observation_phrases,
        config.observation_format,
        config.mask_repeated_searches,
    )


def make_model(config: SB3Config, env: Any) -> Any:
    """``MaskablePPO`` (``config.masking``) or ``PPO`` with the configured policy, seeded, logging to TensorBoard."""
    from stable_baselines3 import PPO

    from agents.sb3_env import CandidateExtractor

    try:
        from sb3_contrib import MaskablePPO
    except ImportError as e:
        from igpo_env.error import DependencyNotInstalled

        raise DependencyNotInstalled("the SB3 agent needs sb3-contrib: `pip install igpo-env[sb3]`") from e
    policy_kwargs: dict[str, Any] = {"net_arch": {"pi": [64], "vf": [64]}}
    if config.policy == "candidate":
        policy, policy_kwargs["features_extractor_class"] = "MultiInputPolicy", CandidateExtractor
    else:
        policy = "MlpPolicy"
    algo = MaskablePPO if config.masking else PPO
    return algo(
        policy,
        env,
        n_steps=config.n_steps,
        batch_size=config.batch_size,
        n_epochs=config.n_epochs,
        learning_rate=config.learning_rate,
        gamma=config.gamma,
        gae_lambda=config.gae_lambda,
        ent_coef=config.ent_coef,
        policy_kwargs=policy_kwargs,
        tensorboard_log=str(Path(config.output_dir) / "tb") if config.tensorboard else None,
        seed=config.seed,
        device="cpu",
        verbose=0,
    )


def train(
    config: SB3Config,
    *,
    scorer: Any = None,
    encoder: Any = None,
    retriever: Any = None,
    dataset: Any = None,
    save: bool = True,
) -> TrainResult:
    """Train the SB3 agent of ``config``; evaluate dev F1 every ``eval_freq`` steps and at the end.

    Args:
        config: The run.
        scorer: IG scorer (default: built from ``config``; pass one to share its memo across runs).
        encoder: A :class:`~igpo_env.wrappers.candidates.CachedEncoder` (default: the packaged MiniLM; share one
            across runs to share its cache).
        retriever: The retriever (default: BM25 over the dataset's corpus).
        dataset: Questions to use instead of ``config.dataset`` (e.g. a list of examples; needs ``retriever``).
        save: Write ``model.zip``, ``curve.json`` and ``config.json`` under ``config.output_dir``.

    Returns:
        The model, the dev F1 curve and the scorer.
    """
    import torch

    from agents.sb3_env import DevF1Callback
    from igpo_env.envs.search_qa import resolve_retriever
    from igpo_env.wrappers.candidates import CachedEncoder

    if config.threads is not None:
        torch.set_num_threads(config.threads)
    train_qs, corpus = load_questions(config, config.train_split, config.max_train_questions, dataset)
    dev_qs, _ = load_questions(config, config.eval_split, config.max_eval_questions, dataset)
    retriever = resolve_retriever(retriever, corpus)
    encoder = encoder if isinstance(encoder, CachedEncoder) else CachedEncoder(encoder or config.encoder)
    if config.reward == "ig" and scorer is None:
        scorer = _ig_scorer(config)
    env = make_train_env(config, train_qs, retriever, encoder, scorer if config.reward == "ig" else None)
    eval_env = make_eval_env(config, dev_qs, retriever, encoder)
    model = make_model(config, env)
    callback = DevF1Callback(eval_env, [q.id for q in dev_qs], config.eval_freq, config.max_episode_steps)
    model.learn(config.total_timesteps, callback=callback, progress_bar=config.progress_bar, tb_log_name=config.reward)
    env.close()
    if save:
        out = Path(config.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        model.save(out / "model.zip")
        (out / "curve.json").write_text(json.dumps(callback.curve, indent=1))
        (out / "config.json").write_text(json.dumps(asdict(config), indent=1))
    return TrainResult(model, callback.curve, scorer)
