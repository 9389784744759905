"""Credit assignment of the turn-reward schemes: every scheme scores the same saved SynthWiki dev trajectories.

Trajectories (saved as jsonl, reused with ``--trajectories``): for each of ``--questions`` dev questions of the
default SynthWiki world (taken in turn from each question type, :func:`pick_questions`), ``--samples`` episodes of
the policy LM sampled at temperature 1 through the project's episode loop (:meth:`agents.llm_agent.LLMAgent.play`)
and ``--samples`` episodes of :class:`agents.scripted.NoisyOracleAgent` (seeds ``seed .. seed + samples - 1``).
Each (source, question) is a group.

Every scheme of :data:`~igpo_env.wrappers.shaping_registry.SHAPING_SCHEMES` replays the saved actions through its
wrapper (:func:`~igpo_env.wrappers.make_shaping`) on a fresh env: the env and BM25 are deterministic, so each scheme
sees the same observations. A turn's *value* is the term the scheme adds to the env reward. ``ig`` / ``log_ig`` are
scored by the policy LM itself (:class:`~igpo_env.scoring.hf.HFScorer`, prefix KV reuse per episode); ``mc_value``
runs ``--mc-k`` policy continuations per turn on the first ``--mc-trajectories`` trajectories of each source (sample
0); ``potential`` uses :func:`answer_token_recall` as its potential; ``gigpo_anchor`` (an advantage scheme) gets as
values the GiGPO step advantages of each full group (:func:`agents.igpo.anchor_advantages.anchor_advantages` over the
retrieved-document-set states).

Per scheme (computed by :func:`benchmarks._credit_metrics.summarize`):

- ``density``: share of turns with a non-zero reward, the rewards placed as the IGPO trainer places them (terms on
  turns 1..T-1, env return + last term on turn T); ``gigpo_anchor``: non-zero step advantages.
- ``zero_variance_rate``: share of groups, cut to their first 4 / 8 / 16 rollouts, whose every turn advantage is 0
  (the trainer's ``paper`` advantage, joint normalization; ``outcome`` with ``ig_coef=0``, i.e. GRPO; GiGPO: episode
  + step advantages). ``null`` where no group that large was scored (``mc_value`` scores single trajectories).
- ``auroc``: AUROC of the values of non-answering turns for "retrieved a supporting document (``supporting_doc_ids``)
  that no earlier turn retrieved"; ``auroc_by_source`` per trajectory source.
- ``spearman_mc``: Spearman correlation with ``mc_value``'s values on the non-answering turns of the mc subset.
- ``scorer_tokens_per_turn``: tokens the scheme's model processed per replayed turn (IG: the scorer's encoded tokens;
  ``mc_value``: prompt + generated tokens of the continuations); 0 for schemes without a model.
- ``seconds``: replay wall time of the scheme (``log_ig``: ``ig``'s, whose scorer calls it reuses, the same
  calls it would make); ``share_of_rollout``: the scheme's time per turn beyond a bare replay,
  over the policy's rollout (generation + env) time per turn.

Run: ``python -m benchmarks.credit_assignment [--quick] [--out DIR] [--model PATH|random-tiny] [--trajectories F]``.
``--quick`` = the random-init tiny LM of :mod:`igpo_env.scoring.tiny` as policy and scorer (a smoke test: its actions
are noise), 2 questions. Writes ``credit_assignment.json``, ``.md``, ``.png`` and the trajectories
(``credit_assignment.trajectories.jsonl``) under ``--out``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks._credit_metrics import (
    GROUP_SIZES,
    SOURCES,
    describe,
    gigpo_group_advantages,
    rollout_seconds_per_turn,
    summarize,
)
from igpo_env._hardware import effective_dtype
from igpo_env.metrics import normalize_answer
from igpo_env.types import Message

__all__ = ["answer_token_recall", "pick_questions", "collect", "replay", "score_schemes", "make_parser", "main"]

logger = logging.getLogger(__name__)

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
NAME = "credit_assignment"
TRAJECTORY_FILE = f"{NAME}.trajectories.jsonl"
RANDOM_TINY = "random-tiny"
"""``--model`` value for the random-init tiny LM of :mod:`igpo_env.scoring.tiny` (smoke tests only)."""
FULL = {"questions": 4, "samples": 16, "max_turns": 6, "mc_trajectories": 3, "mc_k": 2, "model": None}
QUICK = {"questions": 2, "samples": 16, "max_turns": 4, "mc_trajectories": 1, "mc_k": 1, "model": RANDOM_TINY}
SEED = 0
MAX_NEW_TOKENS = 64
"""Longest generated assistant turn (tokens), rollouts and continuations."""


def answer_token_recall(messages: Sequence[Message], ground_truth: Sequence[str]) -> float:
    """Potential of the ``potential`` scheme: the best share of a gold alias's tokens found in the retrieved text.

    Reads the ``<information>`` blocks of the observations (:func:`~igpo_env.wrappers.shaping_turn.retrieved_text`),
    not the prompt or the agent's own turns; tokens after SQuAD normalization.

    Example:
        >>> msgs = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "<search>x</search>"},
        ...         {"role": "user", "content": "<information>Doc 1(Title: A) Karsel Town.</information>"}]
        >>> answer_token_recall(msgs, ["Karsel City", "Ostrand"])
        0.5
    """
    from igpo_env.wrappers.shaping_turn import retrieved_text

    seen = set()
    for m in messages[1:]:
        if m["role"] != "assistant":
            seen.update(normalize_answer(retrieved_text(m["content"])).split())
    best = 0.0
    for gold in ground_truth:
        tokens = set(normalize_answer(gold).split())
        if tokens:
            best = max(best, len(tokens & seen) / len(tokens))
    return best


# ---------------------------------------------------------------------------------------------- trajectories
def load_world() -> tuple[list[Any], Any]:
    """Return the dev questions of the default SynthWiki world (the policy's) and a BM25 retriever of its corpus."""
    from igpo_env.envs.search_qa import SearchQAEnv

    env = SearchQAEnv(dataset=None, split="dev")
    return list(env.examples), env.retriever


def fresh_env(examples: Sequence[Any], retriever: Any, max_turns: int) -> Any:
    """Return a raw SearchQA env over ``examples`` cut at ``max_turns`` (as the episode loop cuts)."""
    from igpo_env.envs.search_qa import SearchQAEnv

    return SearchQAEnv(dataset=list(examples), retriever=retriever, max_turns=max_turns)


def load_model(model: str | None, dtype: str) -> tuple[Any, Any, str]:
    """Return ``(model, tokenizer, description)``: the warm start by default, a directory, or ``random-tiny``."""
    import torch

    if model == RANDOM_TINY:
        from igpo_env.scoring.tiny import tiny_causal_lm, tiny_tokenizer

        return tiny_causal_lm().eval(), tiny_tokenizer(), "random-init tiny LM (igpo_env.scoring.tiny)"
    from agents.igpo.pipeline import resolve_policy
    from agents.policy import load_policy

    path = resolve_policy(model, verbose=False)
    lm, tok = load_policy(path)
    return lm.to(getattr(torch, dtype)), tok, str(path)


def _record(source: str, qid: str, sample: int, seed: int, actions: list[str], **extra: Any) -> dict[str, Any]:
    return {"source": source, "question_id": qid, "group": f"{source}:{qid}", "sample": sample, "seed": seed,
            "actions": actions, **extra}  # fmt: skip


def pick_questions(examples: Sequence[Any], n: int) -> list[str]:
    """Return the ids of ``n`` questions taken in turn from each data source (1-hop, 2-hop, ...), in dataset order.

    Example:
        >>> from types import SimpleNamespace as Q
        >>> qs = [Q(id="a", data_source="x"), Q(id="b", data_source="x"), Q(id="c", data_source="y")]
        >>> pick_questions(qs, 3)
        ['a', 'c', 'b']
    """
    by_source: dict[str, list[str]] = {}
    for ex in examples:
        by_source.setdefault(ex.data_source, []).append(ex.id)
    order = [qid for rnd in itertools.zip_longest(*by_source.values()) for qid in rnd if qid is not None]
    return order[:n]


def collect(
    model: Any, tokenizer: Any, examples: Sequence[Any], retriever: Any, opts: dict[str, Any]
) -> list[dict[str, Any]]:
    """Play the policy and noisy-oracle trajectories of ``opts["questions"]`` dev questions (see the module doc)."""
    from agents.llm_agent import LLMAgent
    from agents.rollout import make_envs
    from agents.scripted import NoisyOracleAgent, run_episode

    qids = pick_questions(examples, opts["questions"])
    n, seed = opts["samples"], opts["seed"]
    out: list[dict[str, Any]] = []
    env = fresh_env(examples, retriever, opts["max_turns"])
    agent = NoisyOracleAgent(env)
    for qid in qids:
        for i in range(n):
            start = time.perf_counter()
            ep = run_episode(env, agent, seed=seed + i, options={"question_id": qid})
            out.append(_record("noisy_oracle", qid, i, seed + i, [m["content"] for m in ep.messages
                               if m["role"] == "assistant"], rollout_seconds=time.perf_counter() - start))  # fmt: skip
    envs = make_envs(len(qids) * n, dataset=list(examples), retriever=retriever)
    policy = LLMAgent(
        model, tokenizer, max_new_tokens=MAX_NEW_TOKENS, do_sample=True, temperature=1.0, seed=seed, batch_size=32
    )
    start = time.perf_counter()
    records = policy.play(
        envs, options=[{"question_id": q} for q in qids for _ in range(n)], max_turns=opts["max_turns"]
    )
    seconds = time.perf_counter() - start
    turns = sum(len(r.actions) for r in records)
    for j, r in enumerate(records):
        qid, i = qids[j // n], j % n
        share = seconds * len(r.actions) / turns
        extra = {"action_types": r.action_types, "rollout_seconds": share}
        out.append(_record("policy", qid, i, seed, list(r.actions), **extra))
    return out


def save_trajectories(trajectories: Sequence[dict[str, Any]], path: Path) -> None:
    """Write one trajectory per jsonl line."""
    with path.open("w", encoding="utf-8") as f:
        for t in trajectories:
            f.write(json.dumps(t) + "\n")


def load_trajectories(path: Path) -> list[dict[str, Any]]:
    """Read the trajectories written by :func:`save_trajectories`."""
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


# ---------------------------------------------------------------------------------------------- replay
def replay(env: Any, trajectories: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Step each trajectory's actions through ``env`` (a fresh env or a shaping wrapper on one).

    Returns:
        Per trajectory ``{"terms", "env_rewards", "retrieved", "action_types", "supporting"}``: per turn the shaping
        term (0 without a shaping wrapper), the env reward, the retrieved doc ids and the action type.

    Raises:
        RuntimeError: if an episode ends before its last saved action, or not after it.
    """
    out = []
    for traj in trajectories:
        _, info = env.reset(options={"question_id": traj["question_id"]})
        rec: dict[str, Any] = {"terms": [], "env_rewards": [], "retrieved": [], "action_types": []}
        rec["supporting"] = list(env.unwrapped.supporting_doc_ids)
        done = False
        for t, action in enumerate(traj["actions"]):
            if done:
                raise RuntimeError(f"{traj['group']} sample {traj['sample']} ended before its action {t}")
            _, reward, terminated, truncated, info = env.step(action)
            term = float(info["shaping"]["reward"]) if "shaping" in info else 0.0
            rec["terms"].append(term)
            rec["env_rewards"].append(float(reward) - term)
            rec["retrieved"].append(list(info["retrieved_doc_ids"]))
            rec["action_types"].append(info["action_type"])
            done = terminated or truncated
        if not done:
            raise RuntimeError(f"{traj['group']} sample {traj['sample']} did not end after its saved actions")
        out.append(rec)
    return out


class _MemoScorer:
    """A caching scorer that remembers each (context, target) score, so ``log_ig`` reuses ``ig``'s scorer calls.

    Both schemes ask the scorer the same questions (only the potential differs), so ``log_ig``'s values are exact and
    its cost is ``ig``'s; the summary reports ``ig``'s measured cost for it. Cache keys and releases go to ``inner``.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.reuse = False
        """Answer from the memo (``log_ig``); off, every row goes to ``inner`` and is remembered (``ig``)."""
        self._memo: dict[tuple[str, str], Any] = {}

    @property
    def encoded_tokens(self) -> int:
        """Tokens the inner scorer encoded."""
        return int(self.inner.encoded_tokens)

    def score(self, contexts: Sequence[Any], targets: Sequence[str], cache_keys: Sequence[Any] | None = None) -> list:
        """Score with ``inner`` (with :attr:`reuse`, only the rows not seen before); return every row's score."""
        keys = [(json.dumps(c), t) for c, t in zip(contexts, targets, strict=True)]
        todo = [i for i, k in enumerate(keys) if not self.reuse or k not in self._memo]
        if todo:
            sub_keys = None if cache_keys is None else [cache_keys[i] for i in todo]
            scores = self.inner.score([contexts[i] for i in todo], [targets[i] for i in todo], cache_keys=sub_keys)
            self._memo.update((keys[i], sc) for i, sc in zip(todo, scores, strict=True))
        return [self._memo[k] for k in keys]

    def release(self, cache_keys: Sequence[Any]) -> None:
        """Release the inner scorer's prefix caches."""
        self.inner.release(cache_keys)


class _CountingPolicy:
    """``messages -> action`` for ``mc_value``: one sampled turn of an :class:`~agents.llm_agent.LLMAgent`, counted."""

    def __init__(self, agent: Any) -> None:
        self.agent = agent
        self.tokens = 0

    def __call__(self, messages: list[Message]) -> str:
        prompt = self.agent.render(messages)
        (action,) = self.agent.generate([prompt])
        tok = self.agent.tokenizer
        self.tokens += len(tok.encode(prompt, add_special_tokens=False)) + len(tok.encode(action))
        return action


def scheme_kwargs(name: str, ctx: dict[str, Any]) -> dict[str, Any]:
    """Arguments of scheme ``name`` in this benchmark (defaults of each wrapper otherwise)."""
    if name in ("ig", "log_ig"):
        return {"scorer": ctx["scorer"]}
    if name == "potential":
        return {"potential_fn": answer_token_recall}
    if name == "mc_value":
        return {"policy": ctx["mc_policy"], "k": ctx["mc_k"], "env_factory": ctx["env_factory"]}
    if name == "evidence_recall":
        return {"corpus": ctx.get("tfidf")}
    return {}


def score_schemes(
    trajectories: Sequence[dict[str, Any]], ctx: dict[str, Any], mc_subset: Sequence[int]
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Replay the trajectories bare and through every wrapper scheme; compute ``gigpo_anchor``'s step advantages.

    Returns:
        ``(bare, runs)``: the bare replay records, and per scheme ``{"values", "env_rewards", "indices", "seconds",
        "tokens"}`` (``values[j]``: per-turn values of trajectory ``indices[j]``).
    """
    from agents.igpo.advantages import group_indices
    from agents.igpo.anchor_advantages import doc_set_states
    from igpo_env.wrappers import SHAPING_SCHEMES, make_shaping

    start = time.perf_counter()
    bare = replay(ctx["env_factory"](), trajectories)
    pairs = zip(trajectories, bare, strict=True)
    differ = sum(t.get("action_types", b["action_types"]) != b["action_types"] for t, b in pairs)
    if differ:
        logger.warning("%d trajectories replay with other action types than they were played with", differ)
    runs: dict[str, dict[str, Any]] = {"bare": {"seconds": time.perf_counter() - start}}
    for name in SHAPING_SCHEMES:
        indices = list(mc_subset) if name == "mc_value" else list(range(len(trajectories)))
        counter = ctx["mc_policy"] if name == "mc_value" else ctx["scorer"] if name in ("ig", "log_ig") else None
        ctx["scorer"].reuse = name == "log_ig"
        before = _tokens(counter)
        start = time.perf_counter()
        env = make_shaping(name, ctx["env_factory"](), **scheme_kwargs(name, ctx))
        recs = replay(env, [trajectories[i] for i in indices])
        seconds = time.perf_counter() - start
        env.close()
        for i, rec in zip(indices, recs, strict=True):
            if rec["retrieved"] != bare[i]["retrieved"]:
                raise RuntimeError(f"scheme {name!r} replayed other retrievals for trajectory {i}")
        runs[name] = {"values": [r["terms"] for r in recs], "env_rewards": [r["env_rewards"] for r in recs],
                      "indices": indices, "seconds": seconds, "tokens": _tokens(counter) - before}  # fmt: skip
        logger.info("%s: %d trajectories in %.1f s", name, len(indices), seconds)
    start = time.perf_counter()
    values: list[list[float]] = [[] for _ in trajectories]
    for idx in group_indices([t["group"] for t in trajectories]):
        keys = [doc_set_states(bare[i]["retrieved"]) for i in idx]
        _, step = gigpo_group_advantages(keys, [bare[i]["env_rewards"] for i in idx])
        for i, row in zip(idx, step, strict=True):
            values[i] = row
    runs["gigpo_anchor"] = {"values": values, "env_rewards": [b["env_rewards"] for b in bare],
                            "indices": list(range(len(trajectories))), "seconds": time.perf_counter() - start,
                            "tokens": 0}  # fmt: skip
    return bare, runs


def _tokens(counter: Any) -> int:
    if counter is None:
        return 0
    return int(getattr(counter, "encoded_tokens", getattr(counter, "tokens", 0)))


# ---------------------------------------------------------------------------------------------- report
def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _markdown(summary: dict[str, Any]) -> str:
    s = summary
    lines = [
        "# Credit assignment of the turn-reward schemes (same saved turns for every scheme)",
        "",
        f"Command: `{s['command']}`.",
        "",
        f"Model `{s['model']}` ({s['dtype']}) as policy, IG scorer and `mc_value` continuation policy; "
        f"{s['machine']}; {s['wall_seconds']:.0f} s in all.",
        "",
        f"Trajectories (`{TRAJECTORY_FILE}`): {s['settings']['questions']} SynthWiki dev questions (in turn from each "
        f"question type: {', '.join(s['question_types'])}) x "
        f"{s['settings']['samples']} samples per source, at most {s['settings']['max_turns']} turns:",
        "",
        "| source | trajectories | turns | search | invalid | non-answer turns | new-support share | mean return |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for src, d in s["trajectory_set"].items():
        lines.append(
            f"| {src} | {d['trajectories']} | {d['turns']} | {d['search_turns']} | {d['invalid_turns']} | "
            f"{d['non_answer_turns']} | {_fmt(d['new_support_share'])} | {_fmt(d['mean_return'])} |"
        )
    lines += [
        "",
        f"`mc_value`: k = {s['settings']['mc_k']} continuations per turn on {s['mc_subset']['trajectories']} "
        f"trajectories (sample 0 of the first {s['settings']['mc_trajectories']} questions per source, "
        f"{s['mc_subset']['turns']} turns); its zero-variance rates need whole groups and are n/a. "
        "Spearman is over the non-answering turns of that subset.",
        "",
        "| scheme | density | zero-var @4 | @8 | @16 | AUROC | AUROC policy | AUROC noisy oracle | Spearman vs "
        "mc_value | scorer tokens / turn | seconds | share of rollout |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, m in s["schemes"].items():
        zv = m["zero_variance_rate"]
        lines.append(
            f"| {name} | {_fmt(m['density'])} | {_fmt(zv['4'])} | {_fmt(zv['8'])} | {_fmt(zv['16'])} | "
            f"{_fmt(m['auroc'])} | {_fmt(m['auroc_by_source']['policy'])} | "
            f"{_fmt(m['auroc_by_source']['noisy_oracle'])} | {_fmt(m['spearman_mc'])} | "
            f"{_fmt(m['scorer_tokens_per_turn'], 0)} | {_fmt(m['seconds'], 1)} | {_fmt(m['share_of_rollout'])} |"
        )
    lines += [
        "",
        "Definitions (module docstring of `benchmarks/credit_assignment.py`): a turn's value is the term the scheme "
        "adds to the env reward (`gigpo_anchor`: its GiGPO step advantage over the full group). Density counts "
        "non-zero rewards as the trainer places them (the env return on the last turn). Zero-variance: groups whose "
        "every turn advantage is 0 (IGPO `paper`/joint; `outcome` = GRPO). AUROC: non-answering turns, positive = "
        "retrieved a supporting document no earlier turn retrieved (n/a: one class only). Share of rollout: the "
        "scheme's time per turn beyond a bare replay over the policy's rollout time per turn.",
        "",
        "Hidden labels: `evidence_recall` reads the gold supporting passages, the very labels the AUROC ranks "
        "against (its AUROC is close to 1 by construction); `ig`, `log_ig`, `answer_in_context` and `potential` "
        "(answer-token recall of the retrieved text) read the gold answer; `outcome`, `search_cost`, `mc_value` and "
        "`gigpo_anchor` read neither beyond the outcome.",
        "",
        f"![credit assignment]({NAME}.png)",
        "",
    ]
    return "\n".join(lines)


def _plot(schemes: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(schemes)
    x = np.arange(len(names))
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))

    def nan(v: Any) -> float:
        return float("nan") if v is None else float(v)

    axes[0].bar(x, [nan(schemes[n]["auroc"]) for n in names], color="tab:blue")
    axes[0].axhline(0.5, color="grey", lw=1, ls="--")
    axes[0].set(title="credit AUROC (new supporting doc)", ylim=(0, 1))
    axes[1].bar(x, [nan(schemes[n]["density"]) for n in names], color="tab:green")
    axes[1].set(title="reward density (non-zero turns)", ylim=(0, 1))
    width = 0.8 / len(GROUP_SIZES)
    for k, g in enumerate(GROUP_SIZES):
        vals = [nan(schemes[n]["zero_variance_rate"][str(g)]) for n in names]
        axes[2].bar(x + (k - 1) * width, vals, width, label=f"group {g}")
    axes[2].set(title="zero-variance group rate", ylim=(0, 1))
    axes[2].legend()
    for ax in axes:
        ax.set_xticks(x, names, rotation=45, ha="right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------- CLI
def make_parser() -> argparse.ArgumentParser:
    """Build the argument parser."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help=f"Smoke test: {RANDOM_TINY} LM, 2 questions, under 3 min.")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="Output directory (default: benchmarks/results).")
    p.add_argument(
        "--model", default=None, help=f"HF dir, packaged name or {RANDOM_TINY!r} (default: the warm-started policy)."
    )
    p.add_argument(
        "--dtype",
        default="bfloat16",
        choices=("float32", "bfloat16"),
        help="Model dtype (bf16 on CPUs with native bf16, else float32).",
    )
    p.add_argument("--questions", type=int, default=None, help="Dev questions, in turn from each type (4; quick: 2).")
    p.add_argument("--samples", type=int, default=None, help="Trajectories per question and source (16).")
    p.add_argument("--max-turns", type=int, default=None, help="Turn limit of an episode (6; quick: 4).")
    p.add_argument("--mc-trajectories", type=int, default=None, help="mc_value: questions per source (3; quick: 1).")
    p.add_argument("--mc-k", type=int, default=None, help="mc_value: continuations per turn (2; quick: 1).")
    p.add_argument("--seed", type=int, default=SEED, help="Sampling / noisy-oracle seed.")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads.")
    p.add_argument(
        "--trajectories",
        default=None,
        help=f"Reuse this jsonl instead of playing (default: play, save {TRAJECTORY_FILE}).",
    )
    return p


def _options(args: argparse.Namespace) -> dict[str, Any]:
    base = QUICK if args.quick else FULL
    opts = {k: getattr(args, k) if getattr(args, k) is not None else v for k, v in base.items()}
    for key in ("questions", "samples", "max_turns", "mc_trajectories", "mc_k"):
        if opts[key] < 1:
            raise ValueError(f"--{key.replace('_', '-')} must be >= 1, got {opts[key]}")
    return {**opts, "seed": args.seed}


def main(argv: list[str] | None = None) -> int:
    """Play (or load) the trajectories, score every scheme on them and write the results."""
    import torch

    from agents.llm_agent import LLMAgent
    from igpo_env.scoring.hf import HFScorer

    args = make_parser().parse_args(argv)
    opts = _options(args)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    examples, retriever = load_world()
    dtype = effective_dtype(args.dtype)  # float32 on a CPU without native bf16
    model, tok, described = load_model(opts["model"], dtype)
    if args.trajectories:
        trajectories = load_trajectories(Path(args.trajectories))
    else:
        trajectories = collect(model, tok, examples, retriever, opts)
        save_trajectories(trajectories, out / TRAJECTORY_FILE)
    logger.info("%d trajectories ready after %.0f s", len(trajectories), time.perf_counter() - t0)
    mc_subset = [
        i
        for source in SOURCES
        for i in [j for j, t in enumerate(trajectories) if t["source"] == source and t["sample"] == 0][
            : opts["mc_trajectories"]
        ]
    ]
    mc_agent = LLMAgent(
        model, tok, max_new_tokens=MAX_NEW_TOKENS, do_sample=True, temperature=1.0, seed=opts["seed"] + 1
    )
    ctx = {
        "scorer": _MemoScorer(HFScorer(model, tok, dtype="auto")),
        "mc_policy": _CountingPolicy(mc_agent),
        "mc_k": opts["mc_k"],
        "env_factory": lambda: fresh_env(examples, retriever, opts["max_turns"]),
    }
    bare, runs = score_schemes(trajectories, ctx, mc_subset)
    schemes = summarize(trajectories, bare, runs)
    played = {t["question_id"] for t in trajectories}
    summary = {
        "command": " ".join(["python -m benchmarks.credit_assignment", *(argv if argv is not None else sys.argv[1:])]),
        "model": described,
        "dtype": dtype,
        "machine": f"{platform.machine()}, torch threads {args.threads}",
        "settings": opts,
        "trajectory_set": describe(trajectories, bare),
        "question_types": sorted({ex.data_source for ex in examples if ex.id in played}),
        "mc_subset": {"trajectories": len(mc_subset), "turns": schemes["mc_value"]["turns"]},
        "rollout_seconds_per_turn": rollout_seconds_per_turn(trajectories),
        "bare_replay_seconds": runs["bare"]["seconds"],
        "schemes": schemes,
        "wall_seconds": time.perf_counter() - t0,
    }
    (out / f"{NAME}.json").write_text(json.dumps(summary, indent=2))
    (out / f"{NAME}.md").write_text(_markdown(summary))
    _plot(schemes, out / f"{NAME}.png")
    print(_markdown(summary))
    print(f"wrote {out / NAME}.json/.md/.png in {summary['wall_seconds']:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
