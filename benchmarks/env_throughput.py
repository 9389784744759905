"""SearchQA-v0 throughput: env steps/s of a single env vs vector envs, BM25 over a 100k-passage SynthWiki world.

Compared side by side in one run, all driven by the same scripted agent (the noisy oracle, so episodes mix searches,
repeats and answers; an answer ends each episode):

- ``single``: one ``gym.make("SearchQA-v0")`` env (TimeLimit), one retriever call per search step;
- ``sync64``: Gymnasium's ``SyncVectorEnv`` over 64 single envs (each search is its own retriever call);
- ``vector16`` / ``vector64``: :class:`~igpo_env.envs.vector.SearchQAVectorEnv`, one batched retriever call per step.

Reported per setting: env steps/s (wall clock, agent included), env-only steps/s (agent time removed) and the share
of the env's time spent inside ``retriever.search`` (``retrieval_time_share``). The issue's target: >= 2,000 env
steps/s in the batch-64 vector env.

Run: ``python -m benchmarks.env_throughput [--quick] [--out DIR]``. The 100k-passage world and its BM25 index are
built once and cached under the igpo-env cache (``benchmarks/env_throughput``, ``indexes``). Writes
``env_throughput.json`` (keys ``single_steps_per_s``, ``vector_steps_per_s``, ``retrieval_time_share`` + details)
and ``env_throughput.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
NAME = "env_throughput"
PASSAGES = 100_000
SEED = 0
TARGET_VECTOR_STEPS_PER_S = 2000
STEPS = {"single": 3000, "sync64": 6400, "vector16": 6400, "vector64": 19200}
QUICK_STEPS = {"single": 1000, "sync64": 3200, "vector16": 3200, "vector64": 6400}
NOISE = {"p_wrong_query": 0.2, "p_redundant": 0.1, "p_wrong_answer": 0.1}

logger = logging.getLogger(__name__)


class TimedRetriever:
    """Wraps a retriever and adds up the seconds and calls spent in ``search``."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.seconds, self.calls, self.queries = inner, 0.0, 0, 0

    def search(self, queries: list[str], k: int) -> list:
        """Delegate to the wrapped retriever, timing the call."""
        start = time.perf_counter()
        out = self.inner.search(queries, k)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        self.queries += len(queries)
        return out

    def reset_counters(self) -> None:
        """Zero the counters."""
        self.seconds, self.calls, self.queries = 0.0, 0, 0

    def __deepcopy__(self, memo: dict) -> TimedRetriever:
        """Shared, not copied (gym's spec.make deep-copies kwargs)."""
        return self


def _world(passages: int, seed: int) -> Path:
    from igpo_env.cache import cache_dir
    from igpo_env.data.synthwiki import GENERATOR_VERSION, build_world

    out = cache_dir("benchmarks", NAME, f"synthwiki-v{GENERATOR_VERSION}-n{passages}-s{seed}")
    if not (out / "world.json").is_file():
        logger.info("building a %d-passage SynthWiki world in %s", passages, out)
        build_world(out, passages=passages, seed=seed, verbose=True)
    return out


def _run_single(world: Path, retriever: TimedRetriever, steps: int) -> dict:
    import gymnasium as gym

    from agents.scripted import NoisyOracleAgent

    env = gym.make("SearchQA-v0", dataset=world, split="train", retriever=retriever)
    agent = NoisyOracleAgent(env, seed=SEED, **NOISE)
    obs, info = env.reset(seed=SEED)
    agent_s = 0.0
    episodes = 0
    retriever.reset_counters()
    start = time.perf_counter()
    for _ in range(steps):
        t = time.perf_counter()
        action = agent.act(obs, info)
        agent_s += time.perf_counter() - t
        obs, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            episodes += 1
            obs, info = env.reset()
    return _result(steps, time.perf_counter() - start, agent_s, retriever, episodes)


def _run_vector(envs: Any, agent: Any, retriever: TimedRetriever, steps: int) -> dict:
    n = envs.num_envs
    obs, infos = envs.reset(seed=SEED)
    agent_s = 0.0
    episodes = 0
    retriever.reset_counters()
    iters = max(1, steps // n)
    start = time.perf_counter()
    for _ in range(iters):
        t = time.perf_counter()
        actions = agent.act_batch(obs, infos)
        agent_s += time.perf_counter() - t
        obs, _, terminated, truncated, infos = envs.step(actions)
        episodes += int((terminated | truncated).sum())
    return _result(iters * n, time.perf_counter() - start, agent_s, retriever, episodes)


def _result(steps: int, seconds: float, agent_s: float, retriever: TimedRetriever, episodes: int) -> dict:
    env_s = seconds - agent_s
    return {
        "steps": steps,
        "episodes": episodes,
        "seconds": round(seconds, 3),
        "steps_per_s": round(steps / seconds, 1),
        "env_only_steps_per_s": round(steps / env_s, 1),
        "retrieval_seconds": round(retriever.seconds, 3),
        "retrieval_time_share": round(retriever.seconds / env_s, 3),
        "retriever_calls": retriever.calls,
        "queries": retriever.queries,
        "queries_per_call": round(retriever.queries / max(1, retriever.calls), 2),
    }


def _markdown(res: dict) -> str:
    lines = [
        "# SearchQA-v0 env throughput",
        "",
        f"BM25 (bm25s) over a {res['passages']:,}-passage SynthWiki world, train split, noisy-oracle agent "
        f"({', '.join(f'{k}={v}' for k, v in NOISE.items())}), top_k=3. Machine: {res['machine']['cpus']} CPUs, "
        f"load average {res['machine']['load_avg_1min']} at start (shared with other jobs). Target: >= "
        f"{TARGET_VECTOR_STEPS_PER_S:,} steps/s in the batch-64 vector env.",
        "",
        "| setting | env steps/s | env-only steps/s | retrieval share | retriever calls | queries/call | episodes |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in res["settings"].items():
        lines.append(
            f"| {name} | {r['steps_per_s']:,.0f} | {r['env_only_steps_per_s']:,.0f} | {r['retrieval_time_share']:.0%} "
            f"| {r['retriever_calls']:,} | {r['queries_per_call']} | {r['episodes']:,} |"
        )
    lines += [
        "",
        "`single`: gym.make env; `sync64`: Gymnasium SyncVectorEnv of 64 single envs (one retriever call per search);",
        "`vectorN`: SearchQAVectorEnv, one batched retriever call per step. Env steps/s include the scripted agent;",
        "env-only removes the agent's time. Setup: world build "
        f"{res['setup_seconds']['world']} s, index load/build {res['setup_seconds']['index']} s (cached after the "
        "first run).",
        "",
    ]
    return "\n".join(lines)


def make_parser() -> argparse.ArgumentParser:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{NAME}", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="Fewer steps (about a minute once the world is cached).")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="Output directory.")
    parser.add_argument("--passages", type=int, default=PASSAGES, help="World size (passages).")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run all settings and write the JSON and Markdown results."""
    args = make_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import gymnasium as gym

    import igpo_env  # noqa: F401  (registers SearchQA-v0)
    from agents.scripted import NoisyOracleAgent
    from igpo_env.envs.vector import SearchQAVectorEnv
    from igpo_env.retrieval import get_retriever

    load = round(os.getloadavg()[0], 2)
    t = time.perf_counter()
    world = _world(args.passages, SEED)
    world_s = time.perf_counter() - t
    t = time.perf_counter()
    retriever = TimedRetriever(get_retriever(str(world / "corpus.jsonl")))
    index_s = time.perf_counter() - t
    steps = QUICK_STEPS if args.quick else STEPS

    settings: dict[str, dict] = {}
    print(f"world {world_s:.1f} s, index {index_s:.1f} s; running {steps}")
    settings["single"] = _run_single(world, retriever, steps["single"])
    print("single", settings["single"])
    sync = gym.make_vec(
        "SearchQA-v0", num_envs=64, vectorization_mode="sync", dataset=world, split="train", retriever=retriever
    )
    # SyncVectorEnv: the agent reads each sub-env's question, so one agent per sub-env
    settings["sync64"] = _run_vector(sync, _PerEnvAgents(sync), retriever, steps["sync64"])
    print("sync64", settings["sync64"])
    for n in (16, 64):
        envs = SearchQAVectorEnv(n, dataset=world, split="train", retriever=retriever)
        agent = NoisyOracleAgent(envs, seed=SEED, **NOISE)
        settings[f"vector{n}"] = _run_vector(envs, agent, retriever, steps[f"vector{n}"])
        print(f"vector{n}", settings[f"vector{n}"])

    res = {
        "single_steps_per_s": settings["single"]["steps_per_s"],
        "vector_steps_per_s": settings["vector64"]["steps_per_s"],
        "retrieval_time_share": settings["vector64"]["retrieval_time_share"],
        "target_vector_steps_per_s": TARGET_VECTOR_STEPS_PER_S,
        "meets_target": settings["vector64"]["steps_per_s"] >= TARGET_VECTOR_STEPS_PER_S,
        "passages": args.passages,
        "quick": args.quick,
        "settings": settings,
        "setup_seconds": {"world": round(world_s, 1), "index": round(index_s, 1)},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg_1min": load},
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{NAME}.json").write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    (out / f"{NAME}.md").write_text(_markdown(res), encoding="utf-8")
    print(
        f"single {res['single_steps_per_s']:,.0f} steps/s, vector64 {res['vector_steps_per_s']:,.0f} steps/s, "
        f"retrieval share {res['retrieval_time_share']:.0%} -> {out / NAME}.json"
    )
    return 0


class _PerEnvAgents:
    """One noisy-oracle agent per sub-env of a Gymnasium SyncVectorEnv, exposing ``act_batch``."""

    def __init__(self, sync: Any) -> None:
        from agents.scripted import NoisyOracleAgent

        self.agents = [NoisyOracleAgent(e, seed=SEED + i, **NOISE) for i, e in enumerate(sync.envs)]

    def act_batch(self, observations: Any, infos: dict) -> tuple[str, ...]:
        """Each agent acts on its own sub-env."""
        return tuple(a.act(observations[i], {"turn": int(infos["turn"][i])}) for i, a in enumerate(self.agents))


if __name__ == "__main__":
    raise SystemExit(main())
