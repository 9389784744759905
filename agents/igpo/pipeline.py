"""The ``igpo-env train`` pipeline as functions: resolve the model and data, evaluate, train with IGPO, evaluate again.

- :class:`RunArguments`: the run options that are not :class:`~agents.igpo.igpo_config.IGPOConfig` fields (model,
  data, frozen layers, dev evaluation, ...); ``igpo-env train`` parses them with the config (``trl.TrlParser``).
- :func:`default_train_config` / :func:`default_run_arguments`: the CPU-sized default run (the values of
  ``agents/igpo/configs/cpu.yaml``, :func:`agents.igpo.configs.train_defaults`) with overrides.
- :func:`run_training`: the pipeline; the quickstart and ``benchmarks/train_compare.py`` call it as a library.
- :func:`resolve_policy` / :func:`resolve_data`: what ``--model`` and ``--data`` name.

Heavy libraries (torch, transformers, TRL) are imported inside the functions, never at module level.

Example:
    >>> run = default_run_arguments(eval_limit=8)
    >>> run.eval_limit, run.freeze_layers, run.model is None
    (8, 15, True)
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents.bootstrap.fixture import FIXTURE_POLICY
from agents.igpo.configs import train_defaults
from igpo_env._validation import check_choice, check_int
from igpo_env.envs.search_qa import DEFAULT_TOP_K

if TYPE_CHECKING:
    from agents.igpo.igpo_config import IGPOConfig

__all__ = [
    "RunArguments",
    "default_train_config",
    "default_run_arguments",
    "resolve_policy",
    "resolve_data",
    "run_training",
    "evaluate_split",
]

logger = logging.getLogger(__name__)

DEFAULT_EVAL_BATCH_SIZE = 32
"""Episodes decoded together in a dev evaluation (:class:`RunArguments` default; ``cpu.yaml`` may say otherwise)."""

TRAIN_ORDERS = ("shuffle", "hop_pairs")
"""Orders of the training questions (:class:`RunArguments` ``train_order``)."""


@dataclass
class RunArguments:
    """Run options of :func:`run_training` (and ``igpo-env train``) that are not ``IGPOConfig`` fields.

    The defaults here are generic; :func:`default_run_arguments` applies the CPU-sized run's (``cpu.yaml``).

    Example:
        >>> RunArguments(eval_every=-1)
        Traceback (most recent call last):
        ...
        ValueError: `eval_every` must be an int >= 0, got -1
    """

    model: str | None = field(
        default=None,
        metadata={
            "help": f"HF model directory, packaged model name or {FIXTURE_POLICY!r} (test fixture); default: the "
            "warm start of the packaged default model (built and cached on first use)."
        },
    )
    freeze_layers: int = field(
        default=0,
        metadata={
            "help": "Keep the embeddings and this many bottom decoder layers frozen (their backward is skipped: "
            "~2.4x faster steps on CPU for SmolLM2-135M at 15 of 30 layers); 0 trains everything."
        },
    )
    data: str | None = field(
        default=None,
        metadata={"help": "Dir with corpus.jsonl and {split}.jsonl (default: the SynthWiki world of world_seed)."},
    )
    world_seed: int = field(default=0, metadata={"help": "Seed of the default world and the bootstrapped model."})
    train_split: str = field(default="train", metadata={"help": "Split to train on."})
    train_limit: int | None = field(default=None, metadata={"help": "Train on the first N questions only."})
    train_order: str = field(
        default="shuffle",
        metadata={
            "help": "'shuffle' (TRL's sampler) or 'hop_pairs': SynthWiki contrast pairs (a 1-hop question, then a "
            "chain question with the same first hop; igpo_env.data.synthwiki.questions.hop_pairs, shuffled by "
            "--seed) kept in order, so each step with an even number of prompts sees both stop decisions."
        },
    )
    eval_split: str = field(default="dev", metadata={"help": "Split evaluated before and after training."})
    eval_limit: int | None = field(default=None, metadata={"help": "Questions evaluated (None: the whole split)."})
    eval_every: int = field(
        default=0, metadata={"help": "Also evaluate every N optimizer steps (0: only before and after)."}
    )
    eval_batch_size: int = field(
        default=DEFAULT_EVAL_BATCH_SIZE, metadata={"help": "Episodes decoded together in evaluation."}
    )
    search_top_k: int = field(default=DEFAULT_TOP_K, metadata={"help": "Passages per search."})
    no_eval: bool = field(default=False, metadata={"help": "Skip the evaluation before and after training."})

    def __post_init__(self) -> None:
        check_int("freeze_layers", self.freeze_layers, minimum=0)
        check_int("world_seed", self.world_seed)
        check_int("train_limit", self.train_limit, minimum=1, optional=True)
        check_choice("train_order", self.train_order, TRAIN_ORDERS)
        check_int("eval_limit", self.eval_limit, minimum=1, optional=True)
        check_int("eval_every", self.eval_every, minimum=0)
        check_int("eval_batch_size", self.eval_batch_size, minimum=1)
        check_int("search_top_k", self.search_top_k, minimum=1)


def _split_defaults(names: set[str]) -> dict[str, Any]:
    return {k: v for k, v in train_defaults().items() if k in names}


def default_train_config(output_dir: str | os.PathLike[str], **overrides: Any) -> IGPOConfig:
    """Build the :class:`~agents.igpo.igpo_config.IGPOConfig` of the default CPU run (``cpu.yaml``), with overrides.

    ``prompts_per_step`` (prompts per optimizer step) sets ``per_device_train_batch_size`` =
    ``prompts_per_step * num_generations``.

    Args:
        output_dir: Where the trainer writes checkpoints, logs and the model.
        **overrides: ``IGPOConfig`` fields; a ``None`` value keeps the default.

    Raises:
        ValueError: for a name that is not an ``IGPOConfig`` field, or a value the config rejects.

    Example:
        >>> cfg = default_train_config("/tmp/igpo-cli-doc", report_to="none", max_steps=2)
        >>> cfg.max_steps, cfg.per_device_train_batch_size, cfg.ig_coef
        (2, 8, 1.0)
    """
    from agents.igpo.igpo_config import IGPOConfig

    names = {f.name for f in fields(IGPOConfig) if f.init}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown IGPOConfig fields {unknown}; see `igpo-env train --help`")
    values = {**_split_defaults(names), **{k: v for k, v in overrides.items() if v is not None}}
    values["output_dir"] = str(output_dir)
    return IGPOConfig(**values)


def default_run_arguments(**overrides: Any) -> RunArguments:
    """Build the :class:`RunArguments` of the default CPU run (``cpu.yaml``), with overrides.

    Raises:
        ValueError: for a name that is not a :class:`RunArguments` field, or a rejected value.

    Example:
        >>> default_run_arguments(model="tiny", no_eval=True).search_top_k
        3
        >>> default_run_arguments(evaluate=False)
        Traceback (most recent call last):
        ...
        ValueError: unknown run options ['evaluate']; known: ['data', 'eval_batch_size', ...]
    """
    names = {f.name for f in fields(RunArguments)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown run options {unknown}; known: {sorted(names)}")
    return RunArguments(**{**_split_defaults(names), **overrides})


def resolve_policy(model: str | os.PathLike[str] | None = None, seed: int = 0, verbose: bool = True) -> Path:
    """Return the model directory a ``--model`` value names, building or fetching it when needed.

    - ``None``: the warm start of the packaged default model (:func:`agents.bootstrap.warm_start`, cached after the
      first build);
    - :data:`~agents.bootstrap.fixture.FIXTURE_POLICY` (``"tiny"``): the from-scratch tiny test fixture
      (:func:`agents.bootstrap.bootstrap`);
    - a registered packaged model name: the model as packaged, not warm-started (:func:`igpo_env.models.ensure_model`);
    - anything else: a local model directory.

    Raises:
        FileNotFoundError: for a path that does not exist.
    """
    from agents.bootstrap import bootstrap, warm_start
    from igpo_env.models import is_registered, resolve_model

    if model is None:
        return warm_start(seed=seed, verbose=verbose)
    if str(model) == FIXTURE_POLICY and not Path(FIXTURE_POLICY).exists():
        return bootstrap(size=FIXTURE_POLICY, seed=seed, verbose=verbose)
    if is_registered(str(model)):
        return Path(resolve_model(str(model)))
    path = Path(model)
    if not path.exists():
        raise FileNotFoundError(
            f"model {str(model)!r} is neither a directory nor a packaged model name (igpo-env model list)"
        )
    return path


def resolve_data(data: str | os.PathLike[str] | None, seed: int = 0) -> Path:
    """Return the data directory a ``--data`` value names (``None``: the default SynthWiki world of ``seed``).

    Raises:
        FileNotFoundError: for a directory that does not exist.
    """
    if data is not None:
        path = Path(data)
        if not path.exists():
            raise FileNotFoundError(f"data directory {str(data)!r} does not exist")
        return path
    from igpo_env.data.synthwiki import default_world

    return Path(default_world(seed))


def _hop_pair_order(examples: Sequence[Any], config: IGPOConfig) -> list[Any]:
    """Return the training questions in ``hop_pairs`` order, and turn TRL's shuffling off so that it is kept.

    Raises:
        ValueError: when a generation batch holds an odd number of prompts (a pair would be split over two steps)
            or ``examples`` has no pair.
    """
    from igpo_env.data.synthwiki.questions import hop_pairs

    prompts = config.generation_batch_size // config.num_generations
    if prompts % 2:
        raise ValueError(
            f"train_order='hop_pairs' needs an even number of prompts per step, got {prompts}: "
            "set --prompts_per_step to a multiple of 2"
        )
    ordered = hop_pairs(examples, config.seed)
    if not ordered:
        raise ValueError(
            "train_order='hop_pairs' found no contrast pair (a 1-hop question and a chain question with the same "
            "first hop, SynthWiki metadata) in the training split; use train_order='shuffle'"
        )
    config.shuffle_dataset = False
    return ordered


def _dev_callback(evaluate: Any, every: int) -> Any:
    from transformers import TrainerCallback

    class DevEval(TrainerCallback):
        """Evaluate dev F1 every ``every`` optimizer steps (and log it as ``dev/f1``)."""

        def __init__(self):
            self.curve: list[dict[str, float]] = []

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if every > 0 and state.global_step % every == 0 and state.global_step < state.max_steps:
                res = evaluate(model)
                self.curve.append({"step": state.global_step, "f1": res["f1"], "em": res["em"]})
                state.log_history.append({"step": state.global_step, "dev/f1": res["f1"], "dev/em": res["em"]})
            return control

    return DevEval()


def evaluate_split(
    play: Callable[[list[str]], list[Any]],
    question_ids: Sequence[str],
    num_processes: int = 1,
    process_index: int = 0,
    *,
    finish: Callable[[], Any] | None = None,
    gather: Callable[[list[Any]], list[Any]] | None = None,
    examples: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate ``question_ids`` split over processes: this one plays its share, all gather the episodes.

    Args:
        play: Plays a list of question ids, returns their episodes (:class:`~agents.rollout.Rollout`).
        question_ids: All the questions evaluated.
        num_processes: Processes taking part (``TrainingArguments.world_size``).
        process_index: This process (:func:`agents.rollout.process_slice` gives its share).
        finish: Called after playing (``LockstepModel.finish``: keeps a sharded policy's collectives in step).
        gather: All processes' episodes in process order (default: ``accelerate.utils.gather_object`` when there
            are several processes).
        examples: Question id -> ``QAExample``, to count the episode types (as :func:`agents.rollout.evaluate_policy`).

    Returns:
        :func:`agents.rollout.summarize_rollouts` of all the episodes: on every process, the 1-process result.

    Example:
        >>> from agents.rollout import Rollout
        >>> play = lambda ids: [Rollout(q, "nq", [], terminated=True, final_info={"f1": 1.0}) for q in ids]
        >>> evaluate_split(play, ["a", "b", "c"], 2, 1, gather=lambda mine: play(["a", "b"]) + mine)["n"]
        3
    """
    from agents.rollout import process_slice, summarize_rollouts

    mine = list(question_ids)[process_slice(len(question_ids), num_processes, process_index)]
    episodes = play(mine) if mine else []
    if finish is not None:
        finish()
    if num_processes > 1:
        if gather is None:
            from accelerate.utils import gather_object

            gather = gather_object
        episodes = gather(episodes)
    return summarize_rollouts(episodes, examples)


def run_training(
    config: IGPOConfig,
    run: RunArguments | None = None,
    *,
    before: dict[str, Any] | None = None,
    save: bool = True,
    verbose: bool = True,
) -> dict[str, Any]:
    """Train a policy with :class:`~agents.igpo.igpo_trainer.IGPOTrainer` and evaluate it before and after.

    Args:
        config: An :class:`~agents.igpo.igpo_config.IGPOConfig` (e.g. :func:`default_train_config`).
        run: The run options (default: :func:`default_run_arguments`, the CPU run's).
        before: A previous ``before`` result of the same start model and eval settings, reused instead of
            evaluating again (greedy decoding makes it deterministic).
        save: Save the trained model (and tokenizer) to ``config.output_dir``.
        verbose: Progress bars and log lines.

    Returns:
        ``{"before", "after"}`` (``evaluate_policy`` results or ``None``), ``"curve"`` (``[{"step", "f1", "em"}]``,
        including steps 0 and ``max_steps`` when evaluating), ``"log_history"`` (the trainer's), ``"model_dir"``,
        ``"output_dir"``, ``"train_seconds"``, ``"ig_share_of_rollout"`` (mean over steps), ``"num_processes"`` and
        ``"process_index"`` (of this process, under ``accelerate launch``: every process returns its result; only
        process 0 writes files besides the trainer's own checkpoints and model).

    Raises:
        FileNotFoundError: for a missing model, data directory or corpus.
    """
    from agents.igpo.igpo_trainer import IGPOTrainer, make_train_dataset
    from agents.igpo.lockstep import LockstepModel, needs_lockstep
    from agents.policy import freeze_bottom, load_policy
    from agents.rollout import evaluate_policy, make_envs
    from igpo_env.data import load_qa
    from igpo_env.retrieval import get_retriever

    run = run if run is not None else default_run_arguments()
    evaluate = not run.no_eval
    model_dir = resolve_policy(run.model or None, run.world_seed, verbose)
    data_dir = resolve_data(run.data or None, run.world_seed)
    corpus = data_dir / "corpus.jsonl"
    if not corpus.exists():
        raise FileNotFoundError(f"{str(data_dir)!r} has no corpus.jsonl")
    retriever = get_retriever(str(corpus))
    train_examples = load_qa(data_dir, split=run.train_split)
    if run.train_order == "hop_pairs":
        train_examples = _hop_pair_order(train_examples, config)
    if run.train_limit is not None:
        train_examples = train_examples[: run.train_limit]
    policy, tokenizer = load_policy(model_dir)
    freeze_bottom(policy, min(run.freeze_layers, len(policy.get_decoder().layers) - 1))

    eval_examples = load_qa(data_dir, split=run.eval_split) if evaluate or run.eval_every else []
    eval_ids = [ex.id for ex in eval_examples][: run.eval_limit]
    eval_envs = (
        make_envs(
            min(run.eval_batch_size, len(eval_ids)), dataset=eval_examples, retriever=retriever, top_k=run.search_top_k
        )
        if eval_ids
        else []
    )

    sharded = {"forward": False}  # set once the trainer has sharded the policy (FSDP / ZeRO-3)

    _ = config.device  # sets up accelerate's distributed state (the process group under `accelerate launch`)
    num_processes, process_index = config.world_size, config.process_index
    eval_by_id = {ex.id: ex for ex in eval_examples}

    def _evaluate(m: Any) -> dict[str, Any]:
        # every process plays its own contiguous share of the dev questions and the episodes are gathered (so the
        # summary is the 1-process one); on a sharded policy each forward pass is a collective, run in lock step
        model = LockstepModel(m) if sharded["forward"] else m
        return evaluate_split(
            lambda ids: evaluate_policy(
                model,
                tokenizer,
                eval_envs,
                ids,
                max_turns=config.max_turns,
                max_turn_tokens=config.max_turn_tokens,
                max_completion_length=config.max_completion_length,
                stop_strings=config.stop_strings,
                verbose=verbose,
                return_rollouts=True,
            )["rollouts"],
            eval_ids,
            num_processes,
            process_index,
            finish=model.finish if sharded["forward"] else None,
            examples=eval_by_id,
        )

    if evaluate and before is None:
        before = _evaluate(policy)
    if verbose and before is not None:
        logger.info("dev before: F1 %.3f EM %.3f (n=%d)", before["f1"], before["em"], before["n"])
    callback = _dev_callback(_evaluate, run.eval_every)
    trainer = IGPOTrainer(
        policy,
        config,
        train_dataset=make_train_dataset(train_examples),
        processing_class=tokenizer,
        env_kwargs={"dataset": train_examples, "retriever": retriever, "top_k": run.search_top_k},
        callbacks=[callback],
    )
    sharded["forward"] = needs_lockstep(trainer.accelerator, ds3_gather_for_generation=False)
    if not verbose:
        from transformers import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    t0 = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - t0
    after = _evaluate(trainer.model) if evaluate else None
    if save:
        trainer.save_model(config.output_dir)  # a collective under ZeRO-3 / FSDP: every process calls it
        if trainer.is_world_process_zero():
            tokenizer.save_pretrained(config.output_dir)
    curve = list(callback.curve)
    if before is not None:
        curve.insert(0, {"step": 0, "f1": before["f1"], "em": before["em"]})
    if after is not None:
        curve.append({"step": trainer.state.global_step, "f1": after["f1"], "em": after["em"]})
    shares = [h["rollout/ig_share"] for h in trainer.state.log_history if "rollout/ig_share" in h]
    return {
        "before": before,
        "after": after,
        "curve": curve,
        "log_history": list(trainer.state.log_history),
        "model_dir": str(model_dir),
        "output_dir": str(config.output_dir),
        "train_seconds": train_seconds,
        "ig_share_of_rollout": sum(shares) / len(shares) if shares else None,
        "num_processes": trainer.accelerator.num_processes,
        "process_index": trainer.accelerator.process_index,
    }
