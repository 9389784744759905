"""Scorer server throughput: 8 concurrent clients on one ``igpo-env serve scorer`` vs in-process scoring.

The workload is what an ``InformationGainWrapper`` asks for: the oracle agent plays SearchQA-v0 episodes on the
default SynthWiki world, and every IG scoring point of every episode (the bare prompt, then the transcript after each
search turn) becomes one (chat transcript, gold answer) pair. All settings score the same pairs with the same model
(the embedded policy LM's architecture, ``SIZES[size]`` of :mod:`agents.bootstrap.fixture`, random init: weights do
not change the speed), side by side in one run:

- ``in_process_single``: one ``HFScorer.score`` call per pair (an env worker with its own model, no batching);
- ``in_process_batch8``: one call per 8 pairs (the in-process ideal for 8 envs stepped together);
- ``server_8_clients``: 8 client threads, each sending one pair per request to one server (dynamic batching,
  ``max_batch=64``, ``max_wait_ms=5``);
- ``server_8_clients_no_batching``: the same with ``max_batch=1`` (what batching buys);
- ``server_8_clients_cache_keys``: each client scores its episodes turn by turn with the episode as cache key, so the
  hosted ``HFScorer`` reuses the episode's encoded transcript (prefix KV) across requests;
- ``in_process_single_cache_keys``: the in-process counterpart of the previous row.

Reported per setting: pairs/s, speed-up over ``in_process_single``, the server's mean pairs per scorer call and the
max abs difference of the log-probs from ``in_process_single`` (exactness over HTTP). Clients are threads of this
process (the scorer's forward releases the GIL); on a shared 2-core machine the numbers are noisy, the ratios less so.

Run: ``python -m benchmarks.scorer_server [--quick] [--out DIR]``; writes ``scorer_server.json`` and
``scorer_server.md``. :func:`measure_server` is reusable with any scorer and pairs (``benchmarks/ig_scoring.py`` may
call it).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agents.bootstrap.fixture import FIXTURE_POLICY

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
NAME = "scorer_server"
SEED = 0
CLIENTS = 8
MAX_BATCH = 64
MAX_WAIT_MS = 5.0
IN_PROCESS_BATCH = 8
EPISODES = {"quick": 40, "full": 160}
SIZE = {"quick": FIXTURE_POLICY, "full": FIXTURE_POLICY}
TORCH_THREADS = 1
"""One intra-op thread: on a shared, oversubscribed CPU, 2 threads made forwards up to 8x slower (spin contention)."""
PROMPT_REPEATS = 3
"""The prompts workload scores each episode's bare prompt this many times (to have enough pairs)."""
TOKENIZER_TEXTS = 2000
"""Corpus passages the benchmark's BPE tokenizer is trained on."""

logger = logging.getLogger(__name__)


def collect_pairs(episodes: int, seed: int = SEED) -> tuple[list[list[dict]], list[str], list[int]]:
    """Play oracle episodes on the default world; return (transcripts, gold answers, episode index) per IG point."""
    import gymnasium as gym

    import igpo_env  # noqa: F401 - registers SearchQA-v0
    from agents.scripted import OracleAgent

    env = gym.make("SearchQA-v0", split="train")
    agent = OracleAgent(env)
    contexts, targets, episode_ids = [], [], []
    for ep in range(episodes):
        agent.reset(seed)
        obs, info = env.reset(seed=seed + ep)
        gold = env.unwrapped.ground_truth[0]
        points = [list(info["messages"])]
        while True:
            obs, _, terminated, truncated, info = env.step(agent.act(obs, info))
            if terminated or truncated:
                break
            points.append(list(info["messages"]))
        contexts += points
        targets += [gold] * len(points)
        episode_ids += [ep] * len(points)
    env.close()
    return contexts, targets, episode_ids


def build_scorer(size: str, seed: int = SEED) -> Any:
    """Build an ``HFScorer`` over a random-init model of the embedded policy LM's architecture (CPU, float32)."""
    import torch

    from agents.bootstrap.fixture import SIZES, make_model, train_tokenizer
    from igpo_env.data import load_corpus
    from igpo_env.data.synthwiki import default_world
    from igpo_env.scoring.hf import HFScorer

    world = default_world(seed)
    texts = []
    for doc in load_corpus(world / "corpus.jsonl"):
        texts.append(doc.contents)
        if len(texts) >= TOKENIZER_TEXTS:
            break
    tokenizer = train_tokenizer(texts, vocab_size=SIZES[size].vocab_size)
    model = make_model(SIZES[size], tokenizer, seed=seed)
    logger.info(
        "scorer model: %s, %d parameters, torch threads %d", size, model.num_parameters(), torch.get_num_threads()
    )
    return HFScorer(model, tokenizer, device="cpu", dtype="float32", batch_size=MAX_BATCH)


def _timed(fn: Callable[[], list]) -> tuple[list, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def measure_in_process(
    scorer: Any, contexts: Sequence, targets: Sequence[str], batch: int = 1, cache_keys: Sequence | None = None
) -> tuple[list, dict[str, Any]]:
    """Score the pairs in-process, ``batch`` pairs per call (with per-pair ``cache_keys`` if given)."""

    def run() -> list:
        out = []
        for i in range(0, len(targets), batch):
            kwargs = {} if cache_keys is None else {"cache_keys": list(cache_keys[i : i + batch])}
            out += scorer.score(list(contexts[i : i + batch]), list(targets[i : i + batch]), **kwargs)
        return out

    if cache_keys is not None:
        scorer.clear_cache()
    scores, seconds = _timed(run)
    if cache_keys is not None:
        scorer.clear_cache()
    return scores, {
        "pairs": len(targets),
        "seconds": round(seconds, 3),
        "pairs_per_s": round(len(targets) / seconds, 1),
    }


def measure_server(
    scorer: Any,
    contexts: Sequence,
    targets: Sequence[str],
    clients: int = CLIENTS,
    max_batch: int = MAX_BATCH,
    max_wait_ms: float = MAX_WAIT_MS,
    episode_ids: Sequence[int] | None = None,
) -> tuple[list, dict[str, Any]]:
    """Serve ``scorer`` on loopback and score the pairs from ``clients`` threads, one pair per request.

    Pairs are dealt to clients round-robin by episode (``episode_ids``; by pair when None), and each client scores its
    pairs in order, so with ``episode_ids`` the turns of an episode arrive in order from one client and are sent with
    the episode as cache key.

    Returns:
        ``(scores in pair order, stats)`` with pairs/s, seconds, the server's batch counters and request latencies.
    """
    from igpo_env.scoring.client import RemoteScorer
    from igpo_env.scoring.server import ServerThread, create_app

    groups = episode_ids if episode_ids is not None else range(len(targets))
    mine: list[list[int]] = [[] for _ in range(clients)]
    for i, g in enumerate(groups):
        mine[g % clients].append(i)
    results: list[Any] = [None] * len(targets)
    latencies: list[float] = []
    errors: list[BaseException] = []
    app = create_app(scorer, max_batch=max_batch, max_wait_ms=max_wait_ms)

    def client(k: int) -> None:
        with RemoteScorer(server.url, timeout=600) as remote:
            remote.health()  # connect (and learn max_items) before the clock starts
            barrier.wait()
            for i in mine[k]:
                keys = None if episode_ids is None else [f"episode-{episode_ids[i]}"]
                start = time.perf_counter()
                try:
                    results[i] = remote.score([contexts[i]], [targets[i]], cache_keys=keys)[0]
                except Exception as e:  # noqa: BLE001 - collected and re-raised below
                    errors.append(e)
                    return
                latencies.append(time.perf_counter() - start)

    barrier = threading.Barrier(clients + 1)
    with ServerThread(app) as server:
        threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
        for t in threads:
            t.start()
        barrier.wait()
        start = time.perf_counter()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - start
    if errors:
        raise errors[0]
    if hasattr(scorer, "clear_cache"):
        scorer.clear_cache()
    stats = app.state.stats
    latencies.sort()
    return results, {
        "pairs": len(targets),
        "seconds": round(seconds, 3),
        "pairs_per_s": round(len(targets) / seconds, 1),
        "clients": clients,
        "max_batch": max_batch,
        "max_wait_ms": max_wait_ms,
        "forward_calls": stats.batches,
        "mean_pairs_per_forward": round(stats.mean_batch_items, 2),
        "max_pairs_per_forward": stats.max_batch_items,
        "latency_p50_ms": round(1000 * latencies[len(latencies) // 2], 1),
        "latency_p95_ms": round(1000 * latencies[int(len(latencies) * 0.95)], 1),
    }


def _max_diff(a: Sequence, b: Sequence) -> float:
    return max(
        abs(x - y) for s, t in zip(a, b, strict=True) for x, y in zip(s.token_logprobs, t.token_logprobs, strict=True)
    )


def run_workload(scorer: Any, contexts: list, targets: list[str], episode_ids: list[int] | None) -> dict[str, Any]:
    """Run the settings on one workload; the cache-key rows only when ``episode_ids`` is given."""
    n_tokens = [len(scorer.prefix_ids(c)) + len(scorer.target_ids(t)) for c, t in zip(contexts, targets, strict=True)]
    settings: dict[str, dict[str, Any]] = {}
    reference, settings["in_process_single"] = measure_in_process(scorer, contexts, targets, batch=1)
    runs = {
        "in_process_batch8": lambda: measure_in_process(scorer, contexts, targets, batch=IN_PROCESS_BATCH),
        "server_8_clients": lambda: measure_server(scorer, contexts, targets),
        "server_8_clients_no_batching": lambda: measure_server(scorer, contexts, targets, max_batch=1),
    }
    if episode_ids is not None:
        keys = [f"episode-{e}" for e in episode_ids]
        runs["in_process_single_cache_keys"] = lambda: measure_in_process(
            scorer, contexts, targets, batch=1, cache_keys=keys
        )
        runs["server_8_clients_cache_keys"] = lambda: measure_server(
            scorer, contexts, targets, episode_ids=episode_ids
        )
    for name, fn in runs.items():
        logger.info("running %s", name)
        scores, stats = fn()
        stats["max_abs_logprob_diff"] = _max_diff(scores, reference)
        settings[name] = stats
    base = settings["in_process_single"]["pairs_per_s"]
    for stats in settings.values():
        stats["speedup_vs_in_process_single"] = round(stats["pairs_per_s"] / base, 2)
    return {
        "pairs": len(targets),
        "mean_tokens_per_pair": round(sum(n_tokens) / len(n_tokens), 1),
        "min_tokens_per_pair": min(n_tokens),
        "max_tokens_per_pair": max(n_tokens),
        "settings": settings,
    }


def run_benchmark(quick: bool) -> dict[str, Any]:
    """Run every setting on both workloads with the same model; return the results dict."""
    mode = "quick" if quick else "full"
    contexts, targets, episode_ids = collect_pairs(EPISODES[mode])
    firsts = [i for i, e in enumerate(episode_ids) if i == 0 or e != episode_ids[i - 1]]
    prompts = [contexts[i] for i in firsts] * PROMPT_REPEATS
    prompt_targets = [targets[i] for i in firsts] * PROMPT_REPEATS
    scorer = build_scorer(SIZE[mode])
    scorer.score(contexts[:IN_PROCESS_BATCH], targets[:IN_PROCESS_BATCH])  # warm-up
    workloads = {
        "transcripts": run_workload(scorer, contexts, targets, episode_ids),
        "prompts": run_workload(scorer, prompts, prompt_targets, None),
    }
    main = workloads["transcripts"]["settings"]
    return {
        "name": NAME,
        "quick": quick,
        "episodes": EPISODES[mode],
        "model": {
            "architecture": "Qwen2 (embedded policy LM, random init)",
            "size": SIZE[mode],
            "parameters": scorer.model.num_parameters(),
            "dtype": "float32",
            "device": "cpu",
        },
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": TORCH_THREADS,
            "load_avg_1min": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
        },
        "server_8_clients_pairs_per_s": main["server_8_clients"]["pairs_per_s"],
        "server_8_clients_cache_keys_pairs_per_s": main["server_8_clients_cache_keys"]["pairs_per_s"],
        "in_process_single_pairs_per_s": main["in_process_single"]["pairs_per_s"],
        "server_speedup_vs_in_process_single": main["server_8_clients"]["speedup_vs_in_process_single"],
        "server_batching_speedup_prompts": round(
            workloads["prompts"]["settings"]["server_8_clients"]["pairs_per_s"]
            / workloads["prompts"]["settings"]["server_8_clients_no_batching"]["pairs_per_s"],
            2,
        ),
        "server_max_abs_logprob_diff": max(
            st["max_abs_logprob_diff"]
            for w in workloads.values()
            for st in w["settings"].values()
            if "max_abs_logprob_diff" in st
        ),
        "workloads": workloads,
    }


def _markdown(res: dict[str, Any]) -> str:
    m = res["model"]
    lines = [
        "# Scorer server throughput: 8 concurrent clients vs in-process",
        "",
        f"Same model for every row: {m['architecture']}, size {m['size']} ({m['parameters']:,} parameters), "
        f"{m['dtype']} on {m['device']} ({res['machine']['torch_threads']} torch thread). Server: "
        f"max_batch={MAX_BATCH}, max_wait_ms={MAX_WAIT_MS}, one pair per request, {CLIENTS} client threads. "
        f"Machine: {res['machine']['cpus']} CPUs, load average {res['machine']['load_avg_1min']} at the end "
        "(shared with other jobs: absolute numbers are noisy).",
        "",
        "Workloads: `transcripts` = every IG scoring point (prompt, then the transcript after each search) of "
        f"{res['episodes']} oracle episodes on the default SynthWiki world; `prompts` = the bare prompts (the p_0 "
        f"points) of the same episodes, x{PROMPT_REPEATS}.",
    ]
    for name, w in res["workloads"].items():
        lines += [
            "",
            f"## {name}: {w['pairs']} pairs, {w['min_tokens_per_pair']}-{w['max_tokens_per_pair']} tokens "
            f"(mean {w['mean_tokens_per_pair']})",
            "",
            "| setting | pairs/s | vs in-process single | pairs per scorer call | p50 / p95 latency (ms) "
            "| max abs log-prob diff |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for setting, s in w["settings"].items():
            per_forward = s.get("mean_pairs_per_forward", 1 if "single" in setting else IN_PROCESS_BATCH)
            latency = f"{s['latency_p50_ms']} / {s['latency_p95_ms']}" if "latency_p50_ms" in s else "-"
            lines.append(
                f"| {setting} | {s['pairs_per_s']:,.1f} | {s['speedup_vs_in_process_single']:.2f}x | {per_forward} "
                f"| {latency} | {s.get('max_abs_logprob_diff', 0.0):.1e} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and write ``scorer_server.json`` / ``scorer_server.md``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="Fewer episodes (under ~3 minutes on 2 cores).")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="Output directory (default: benchmarks/results).")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    import torch

    torch.set_num_threads(TORCH_THREADS)
    res = run_benchmark(args.quick)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{NAME}.json").write_text(json.dumps(res, indent=2) + "\n")
    (out / f"{NAME}.md").write_text(_markdown(res))
    print(_markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
