"""A non-LLM agent with the same InformationGainWrapper: SB3 MaskablePPO on candidate actions, outcome-only vs IG.

The agent (:mod:`agents.sb3`) picks among the candidate actions of
:class:`~igpo_env.wrappers.discrete.CandidateActionWrapper` on SynthWiki 1-hop + 2-hop questions. Per seed, two runs
differ only in the reward: the env's outcome F1 alone, or the outcome plus IGPO's information gain scored by
``InformationGainVectorWrapper`` (one batched call per step) with the SmolLM2-135M-Instruct scorer. Both share the
seed, the questions, the envs and the policy. Dev F1 (deterministic policy, the first ``--eval-questions`` dev
questions, one episode each) is measured at step 0, every ``--eval-freq`` env steps and at the end. Next to them:

- ``random_f1``: uniformly random valid candidates (mean over the seeds);
- ``noisy_oracle_f1``: :class:`agents.scripted.NoisyOracleAgent` (default noise; reads the hidden hops) writing text
  actions on the same dev questions with the env's default 10-turn limit (mean over the seeds);
- ``candidate_ceiling_f1``: a hidden-label policy restricted to the candidates (searches each hop's entity when it is
  offered, answers the gold when it is offered): what the action space allows.

IG scores are memoized per state (``--ig-memo``, default: the question and the set of retrieved observations), shared
by the seeds; memo hits / misses and the scorer's CPU time are reported.

Run: ``python -m benchmarks.sb3_compare [--quick] [--out DIR] [--seeds N] [--timesteps N] [--scorer DIR|NAME]``.
``--quick``: 2 seeds, 768 steps, 32 train / 24 dev questions. Writes ``sb3_compare.json`` (``ig_final_f1``,
``outcome_final_f1``, ``random_f1``, ``noisy_oracle_f1``, per-seed curves), ``sb3_compare.md`` and ``sb3_compare.png``.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
NAME = "sb3_compare"
REWARDS = ("outcome", "ig")
FULL = {"seeds": 3, "timesteps": 5000, "eval_freq": 1250, "train_questions": 200, "eval_questions": 100, "num_envs": 8}
QUICK = {"seeds": 2, "timesteps": 768, "eval_freq": 384, "train_questions": 32, "eval_questions": 24, "num_envs": 4}

logger = logging.getLogger(__name__)


def make_parser() -> argparse.ArgumentParser:
    """Build the argument parser."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="2 seeds, 768 steps, 32 train / 24 dev questions.")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="Output directory (default: benchmarks/results).")
    p.add_argument("--seeds", type=int, default=None, help="Seeds per reward (3; quick: 2).")
    p.add_argument("--timesteps", type=int, default=None, help="Env steps per run (5000; quick: 768).")
    p.add_argument("--eval-freq", type=int, default=None, help="Env steps between dev evaluations (1250; quick: 384).")
    p.add_argument("--train-questions", type=int, default=None, help="Train questions (200; quick: 32).")
    p.add_argument("--eval-questions", type=int, default=None, help="Dev questions (100; quick: 24).")
    p.add_argument("--num-envs", type=int, default=None, help="Parallel episodes (8; quick: 4).")
    p.add_argument("--scorer", default=None, help="IG scorer model dir or packaged name (default: packaged SmolLM2).")
    p.add_argument("--ig-memo", default="observations", choices=("transcript", "observations", "none"))
    p.add_argument("--ig-coef", type=float, default=1.0, help="Weight of the IG reward.")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads.")
    return p


def _mean(xs: list[float]) -> float | None:
    return statistics.fmean(xs) if xs else None


def _candidate_ceiling(env: Any, question_ids: list[str], max_turns: int) -> float:
    """Dev F1 of the hidden-label policy over the candidates (see the module docstring)."""
    from agents.sb3_env import evaluate_candidates
    from igpo_env.metrics import score_answer
    from igpo_env.wrappers.candidates import phrase_key

    n = env.space.num_phrases

    def policy(obs: Any, mask: Any) -> int:
        q = env.unwrapped.question
        phrases = env.phrases
        f1 = [score_answer(p, q.golden_answers, "f1") if p else 0.0 for p in phrases]
        if max(f1) >= 1.0:
            return n + f1.index(max(f1))
        keys = [phrase_key(p) if p else None for p in phrases]
        for hop in q.metadata.get("hops", []):
            key = phrase_key(hop["entity"])
            if key in keys and mask[keys.index(key)]:
                return keys.index(key)
        return n + f1.index(max(f1))

    return evaluate_candidates(policy, env, question_ids, max_turns)["f1"]


def _noisy_oracle(dev_qs: list[Any], retriever: Any, seeds: int) -> float:
    import gymnasium as gym

    from agents.scripted import NoisyOracleAgent, run_episode

    env = gym.make("SearchQA-v0", dataset=dev_qs, retriever=retriever)
    scores = []
    for seed in range(seeds):
        agent = NoisyOracleAgent(env, seed=seed)
        eps = [run_episode(env, agent, options={"question_id": q.id}) for q in dev_qs]
        scores.append(statistics.fmean(e.final_info.get("f1", 0.0) if e.terminated else 0.0 for e in eps))
    return statistics.fmean(scores)


class _TimedScorer:
    """Accumulates the CPU time of the wrapped scorer's calls."""

    def __init__(self, scorer: Any) -> None:
        self.scorer, self.cpu_seconds, self.tokenizer = scorer, 0.0, getattr(scorer, "tokenizer", None)

    def score(self, contexts: Any, targets: Any) -> Any:
        start = time.process_time()
        try:
            return self.scorer.score(contexts, targets)
        finally:
            self.cpu_seconds += time.process_time() - start


def _plot(summary: dict[str, Any], runs: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for reward, color in (("ig", "tab:blue"), ("outcome", "tab:orange")):
        mine = [r for r in runs if r["reward"] == reward]
        n = min(len(r["curve"]) for r in mine)
        steps = [statistics.fmean(r["curve"][i]["timesteps"] for r in mine) for i in range(n)]
        f1 = [[r["curve"][i]["f1"] for r in mine] for i in range(n)]
        label = "outcome + IG" if reward == "ig" else "outcome only"
        ax.plot(steps, [statistics.fmean(x) for x in f1], marker="o", color=color, label=f"{label} (mean)")
        ax.fill_between(steps, [min(x) for x in f1], [max(x) for x in f1], color=color, alpha=0.2)
    for key, style, label in (
        ("noisy_oracle_f1", "k--", "noisy oracle (text actions)"),
        ("candidate_ceiling_f1", "g:", "candidate ceiling (hidden labels)"),
        ("random_f1", "r-.", "random candidates"),
    ):
        ax.axhline(summary[key], color=style[0], linestyle=style[1:], label=label)
    ax.set(
        xlabel="env steps",
        ylabel="dev F1",
        ylim=(0, 1),
        title=f"SB3 MaskablePPO on candidate actions ({summary['seeds']} seeds, band = range)",
    )
    ax.legend(fontsize=8, loc="center right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _markdown(summary: dict[str, Any]) -> str:
    def fmt(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.3f}"

    lines = [
        "# SB3 MaskablePPO on candidate actions: outcome-only vs IG rewards",
        "",
        f"Command: `{summary['command']}`.",
        "",
        f"{summary['seeds']} seeds x {summary['timesteps']} env steps per run, {summary['train_questions']} train / "
        f"{summary['eval_questions']} dev questions ({summary['data_sources']}), IG scorer `{summary['scorer']}` "
        f"(memo key `{summary['ig_memo']}`), {summary['machine']}.",
        "",
        "| policy | dev F1 (mean) | per seed |",
        "|---|---|---|",
        f"| MaskablePPO, outcome + IG | {fmt(summary['ig_final_f1'])} | {summary['ig_final_f1_per_seed']} |",
        f"| MaskablePPO, outcome only | {fmt(summary['outcome_final_f1'])} | {summary['outcome_final_f1_per_seed']} |",
        f"| random candidates | {fmt(summary['random_f1'])} | |",
        f"| noisy oracle (text actions, hidden hops) | {fmt(summary['noisy_oracle_f1'])} | |",
        f"| candidate ceiling (hidden labels) | {fmt(summary['candidate_ceiling_f1'])} | |",
        "",
        f"Dev F1 by source at the end (mean over seeds): IG {summary['ig_final_by_source']}, outcome "
        f"{summary['outcome_final_by_source']}.",
        "",
        f"IG scoring: {summary['ig_states_scored']} states scored, {summary['ig_memo_hits']} memo hits, "
        f"{fmt(summary['ig_scorer_cpu_seconds'])} CPU s in the scorer. Train wall s (mean): IG "
        f"{fmt(summary['ig_train_seconds'])}, outcome {fmt(summary['outcome_train_seconds'])}; total "
        f"{summary['wall_seconds']:.0f} s wall, {summary['cpu_seconds']:.0f} s CPU (shared, nice'd CPU).",
        "",
        f"![dev F1 vs env steps]({NAME}.png)",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and write the results."""
    args = make_parser().parse_args(argv)
    base = QUICK if args.quick else FULL
    opts = {k: getattr(args, k) if getattr(args, k) is not None else v for k, v in base.items()}
    for key, value in opts.items():
        if value < 1 and key != "eval_freq":
            raise ValueError(f"--{key.replace('_', '-')} must be >= 1, got {value}")
    import torch

    from agents.sb3 import SB3Config, hf_scorer, load_questions, make_eval_env, train
    from agents.sb3_env import MemoScorer, evaluate_candidates, random_candidate_policy
    from igpo_env.envs.search_qa import resolve_retriever
    from igpo_env.models import DEFAULT_MODEL
    from igpo_env.wrappers.candidates import CachedEncoder

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0, c0 = time.perf_counter(), time.process_time()

    def config(reward: str, seed: int) -> SB3Config:
        return SB3Config(
            reward=reward,
            ig_coef=args.ig_coef,
            ig_memo=args.ig_memo,
            scorer=args.scorer,
            seed=seed,
            total_timesteps=opts["timesteps"],
            eval_freq=opts["eval_freq"],
            max_train_questions=opts["train_questions"],
            max_eval_questions=opts["eval_questions"],
            num_envs=opts["num_envs"],
            tensorboard=False,
            progress_bar=False,
            threads=args.threads,
            output_dir=str(out / f"{NAME}-runs" / f"{reward}-seed{seed}"),
        )

    base_config = config("ig", 0)
    train_qs, corpus = load_questions(base_config, base_config.train_split, opts["train_questions"])
    dev_qs, _ = load_questions(base_config, base_config.eval_split, opts["eval_questions"])
    retriever = resolve_retriever(None, corpus)
    encoder = CachedEncoder()
    timed = _TimedScorer(hf_scorer(base_config))
    scorer = timed if args.ig_memo == "none" else MemoScorer(timed, key=args.ig_memo)

    eval_env = make_eval_env(base_config, dev_qs, retriever, encoder)
    dev_ids = [q.id for q in dev_qs]
    turns = base_config.max_episode_steps
    random_f1 = _mean(
        [evaluate_candidates(random_candidate_policy(s), eval_env, dev_ids, turns)["f1"] for s in range(opts["seeds"])]
    )
    ceiling = _candidate_ceiling(eval_env, dev_ids, turns)
    noisy = _noisy_oracle(dev_qs, retriever, opts["seeds"])
    logger.info("random %.3f, noisy oracle %.3f, candidate ceiling %.3f", random_f1, noisy, ceiling)

    runs = []
    for seed in range(opts["seeds"]):
        for reward in REWARDS:
            start = time.perf_counter()
            result = train(config(reward, seed), scorer=scorer, encoder=encoder, retriever=retriever, save=False)
            runs.append(
                {
                    "reward": reward,
                    "seed": seed,
                    "curve": result.curve,
                    "final_f1": result.curve[-1]["f1"],
                    "final_by_source": result.curve[-1]["by_source"],
                    "train_seconds": time.perf_counter() - start,
                }
            )
            print(f"{reward:>7} seed {seed}: dev F1 {[round(p['f1'], 3) for p in result.curve]}", flush=True)

    per = {r: [x for x in runs if x["reward"] == r] for r in REWARDS}

    def by_source(reward: str) -> dict[str, float]:
        sources = per[reward][0]["final_by_source"]
        return {s: round(statistics.fmean(x["final_by_source"][s] for x in per[reward]), 4) for s in sources}

    summary = {
        "command": " ".join(["python -m benchmarks.sb3_compare", *(argv if argv is not None else sys.argv[1:])]),
        "seeds": opts["seeds"],
        "timesteps": opts["timesteps"],
        "eval_freq": opts["eval_freq"],
        "train_questions": len(train_qs),
        "eval_questions": len(dev_qs),
        "num_envs": opts["num_envs"],
        "data_sources": base_config.data_sources,
        "max_episode_steps": turns,
        "scorer": args.scorer or DEFAULT_MODEL,
        "ig_memo": args.ig_memo,
        "ig_coef": args.ig_coef,
        "machine": f"{platform.machine()}, torch threads {args.threads}",
        "ig_final_f1": _mean([r["final_f1"] for r in per["ig"]]),
        "outcome_final_f1": _mean([r["final_f1"] for r in per["outcome"]]),
        "ig_final_f1_per_seed": [round(r["final_f1"], 4) for r in per["ig"]],
        "outcome_final_f1_per_seed": [round(r["final_f1"], 4) for r in per["outcome"]],
        "ig_final_f1_std": statistics.pstdev([r["final_f1"] for r in per["ig"]]),
        "outcome_final_f1_std": statistics.pstdev([r["final_f1"] for r in per["outcome"]]),
        "ig_final_by_source": by_source("ig"),
        "outcome_final_by_source": by_source("outcome"),
        "random_f1": random_f1,
        "noisy_oracle_f1": noisy,
        "candidate_ceiling_f1": ceiling,
        "ig_states_scored": scorer.misses if isinstance(scorer, MemoScorer) else None,
        "ig_memo_hits": scorer.hits if isinstance(scorer, MemoScorer) else None,
        "ig_scorer_cpu_seconds": timed.cpu_seconds,
        "ig_train_seconds": _mean([r["train_seconds"] for r in per["ig"]]),
        "outcome_train_seconds": _mean([r["train_seconds"] for r in per["outcome"]]),
        "wall_seconds": time.perf_counter() - t0,
        "cpu_seconds": time.process_time() - c0,
    }
    (out / f"{NAME}.json").write_text(json.dumps({**summary, "runs": runs}, indent=2))
    (out / f"{NAME}.md").write_text(_markdown(summary))
    _plot(summary, runs, out / f"{NAME}.png")
    print(_markdown(summary))
    print(f"wrote {out / NAME}.json/.md/.png in {summary['wall_seconds']:.0f}s")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    raise SystemExit(main())
