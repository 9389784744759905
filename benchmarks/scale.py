"""One scorer server shared by N env worker processes: scored turns/s vs N, and what dynamic batching buys.

Set up on loopback, everything in one run:

- **server**: ``igpo-env serve scorer --model DIR`` in its own process (one torch thread, CPU). ``DIR`` is the tiny
  fixture model of :mod:`igpo_env.scoring.tiny` (random-init Qwen2 + byte-level BPE chat tokenizer, saved once), or
  ``--model`` (a model directory or a packaged name such as ``smollm2-135m-instruct``).
- **workers**: 8 processes started once, each a ``SearchQA-v0`` env on the default SynthWiki world wrapped in
  ``InformationGainWrapper`` over a ``RemoteScorer`` to the server, played by the oracle agent (it searches each
  hop, then answers). Each reset and each search turn is one scored (transcript, gold answer) pair, sent with the
  episode as cache key; finished episodes release their prefix caches. Phase N runs the first N workers for the
  same window.
- **phases**: N = 1, 2, 4, 8 against the batching server (``--max-batch 64 --max-wait-ms 5``, the defaults), then
  N = 8 against a second server that does not batch (``--max-batch 1``).

Reported: ``workers: [{n, scored_turns_per_s, ...}]`` (total scored pairs of all workers / the window), the speed-up
over N = 1, the server's mean pairs per forward call, and ``batching_gain`` = scored turns/s at N = 8 with batching
/ without. On a CPU shared by server and workers, N workers add CPU demand as well as requests, so the curve shows
how far one server keeps up rather than GPU-style scaling; the ratios come from one run on one machine.

Run: ``python -m benchmarks.scale [--quick] [--out DIR] [--model M]``; ``--quick`` (10 s windows) takes under 3
minutes on 2 cores. Writes ``scale.json`` and ``scale.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import multiprocessing as mp
import os
import time
from pathlib import Path
from typing import Any

from benchmarks._report import run_info, write_results
from benchmarks.retrieval import free_port, serve_process

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
NAME = "scale"
SEED = 0
WORKERS = (1, 2, 4, 8)
WINDOW_S = {"quick": 10.0, "full": 30.0}
BATCHED = {"max_batch": 64, "max_wait_ms": 5.0}
"""The batching server: ``serve scorer``'s defaults."""
UNBATCHED = {"max_batch": 1, "max_wait_ms": 0.0}
WORKER_START_TIMEOUT_S = 600.0
"""Eight workers importing gymnasium and building their envs on a busy 2-core machine take a while."""
CLIENT_TIMEOUT_S = 300.0
SEED_STRIDE = 100_000
"""Worker ``i`` plays seeds ``SEED + i * SEED_STRIDE + episode``: different questions per worker."""

logger = logging.getLogger(__name__)


def tiny_model_dir(work: Path) -> Path:
    """Save the tiny fixture model and tokenizer (once) to ``work/tiny-model``."""
    out = work / "tiny-model"
    if not (out / "config.json").is_file():
        from igpo_env.scoring.tiny import tiny_causal_lm, tiny_tokenizer

        tiny_causal_lm(seed=SEED).save_pretrained(out)
        tiny_tokenizer().save_pretrained(out)
    return out


# ---------------------------------------------------------------------------------------------------- worker


def _worker(index: int, urls: dict[str, str], conn: Any) -> None:
    """Env worker process: build one wrapped env per server, warm up, then run the windows it is sent."""
    import gymnasium as gym

    import igpo_env  # noqa: F401 - registers SearchQA-v0
    from agents.scripted import OracleAgent, run_episode
    from igpo_env.scoring.client import RemoteScorer
    from igpo_env.wrappers.information_gain import InformationGainWrapper

    class CountingScorer(RemoteScorer):
        """A RemoteScorer that counts the pairs it had scored."""

        pairs = 0

        def score(self, contexts, targets, cache_keys=None):  # noqa: D102 - RemoteScorer.score
            out = super().score(contexts, targets, cache_keys=cache_keys)
            self.pairs += len(targets)
            return out

    stacks = {}
    seed = SEED + index * SEED_STRIDE
    base = gym.make("SearchQA-v0", split="train")  # one env, one wrapper per server (never interleaved)
    for name, url in urls.items():
        scorer = CountingScorer(url, timeout=CLIENT_TIMEOUT_S)
        env = InformationGainWrapper(base, scorer)
        agent = OracleAgent(env)
        run_episode(env, agent, seed=seed)  # warm-up: connections, caches, lazy imports
        seed += 1
        stacks[name] = (env, agent, scorer)
    conn.send("ready")
    while True:
        command = conn.recv()
        if command is None:
            break
        env, agent, scorer = stacks[command["server"]]
        pairs, steps, episodes = scorer.pairs, 0, 0
        start = time.perf_counter()
        deadline = start + command["seconds"]
        while time.perf_counter() < deadline:
            steps += len(run_episode(env, agent, seed=seed).rewards)
            seed += 1
            episodes += 1
        conn.send(
            {
                "pairs": scorer.pairs - pairs,
                "steps": steps,
                "episodes": episodes,
                "seconds": time.perf_counter() - start,
            }
        )
    for _, _, scorer in stacks.values():
        scorer.close()
    base.close()


@contextlib.contextmanager
def workers(n: int, urls: dict[str, str]) -> Any:
    """Start ``n`` worker processes (spawned); yield their pipes once all are warmed up."""
    ctx = mp.get_context("spawn")
    pipes, procs = [], []
    try:
        for i in range(n):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(i, urls, child), daemon=True)
            proc.start()
            pipes.append(parent)
            procs.append(proc)
        for i, pipe in enumerate(pipes):
            if not pipe.poll(WORKER_START_TIMEOUT_S) or pipe.recv() != "ready":
                raise RuntimeError(f"worker {i} did not start within {WORKER_START_TIMEOUT_S} s")
        yield pipes
    finally:
        for pipe in pipes:
            with contextlib.suppress(OSError):
                pipe.send(None)
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.terminate()


def run_phase(pipes: list[Any], n: int, server: str, url: str, seconds: float) -> dict[str, Any]:
    """Run the first ``n`` workers against ``server`` for ``seconds``; return the totals and the server's counters."""
    import httpx

    before = httpx.get(url + "/stats", timeout=CLIENT_TIMEOUT_S).json()
    for pipe in pipes[:n]:
        pipe.send({"server": server, "seconds": seconds})
    done = [pipe.recv() for pipe in pipes[:n]]
    after = httpx.get(url + "/stats", timeout=CLIENT_TIMEOUT_S).json()
    window = max(d["seconds"] for d in done)  # the last worker to finish its episode closes the window
    pairs = sum(d["pairs"] for d in done)
    calls = after["batches"] - before["batches"]
    return {
        "n": n,
        "server": server,
        "scored_turns_per_s": round(pairs / window, 2),
        "env_steps_per_s": round(sum(d["steps"] for d in done) / window, 2),
        "scored_turns": pairs,
        "episodes": sum(d["episodes"] for d in done),
        "window_s": round(window, 2),
        "scorer_calls": calls,
        "server_scored_pairs": after["items"] - before["items"],
        "mean_pairs_per_call": round((after["items"] - before["items"]) / calls, 2) if calls else 0.0,
        "cache_bytes_after": (after.get("cache") or {}).get("bytes"),
    }


def run_benchmark(model: str, seconds: float, work: Path) -> dict[str, Any]:
    """Start both servers and the workers, run every phase; return the results dict."""
    import gymnasium as gym

    import igpo_env  # noqa: F401 - registers SearchQA-v0

    gym.make("SearchQA-v0", split="train").close()  # build the default world and its index once, before the workers
    server_env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    common = ["serve", "scorer", "--model", model, "--device", "cpu"]
    batched = [*common, "--max-batch", str(BATCHED["max_batch"]), "--max-wait-ms", str(BATCHED["max_wait_ms"])]
    plain = [*common, "--max-batch", str(UNBATCHED["max_batch"]), "--max-wait-ms", str(UNBATCHED["max_wait_ms"])]
    with (
        serve_process(batched, free_port(), env=server_env) as batched_url,
        serve_process(plain, free_port(), env=server_env) as plain_url,
    ):
        urls = {"batched": batched_url, "unbatched": plain_url}
        logger.info("servers up (%s); starting %d workers", urls, max(WORKERS))
        with workers(max(WORKERS), urls) as pipes:
            phases = []
            for n in WORKERS:
                phases.append(run_phase(pipes, n, "batched", batched_url, seconds))
                logger.info("N=%d: %.1f scored turns/s", n, phases[-1]["scored_turns_per_s"])
            unbatched = run_phase(pipes, max(WORKERS), "unbatched", plain_url, seconds)
            logger.info("N=%d without batching: %.1f scored turns/s", max(WORKERS), unbatched["scored_turns_per_s"])
    base = phases[0]["scored_turns_per_s"]
    for phase in phases:
        phase["speedup_vs_1"] = round(phase["scored_turns_per_s"] / base, 2) if base else None
    top = phases[-1]["scored_turns_per_s"]
    return {
        "workers": phases,
        "unbatched": unbatched,
        "batching_gain": round(top / unbatched["scored_turns_per_s"], 2) if unbatched["scored_turns_per_s"] else None,
        "window_s": seconds,
        "servers": {"batched": BATCHED, "unbatched": UNBATCHED},
    }


def write_markdown(r: dict[str, Any], path: Path) -> None:
    """Write the results table."""
    lines = [
        "# One scorer server shared by N env workers",
        "",
        f"Run: `{r['command']}`; {r['timestamp']}; {r['machine']}; load average at start {r['load_average']} "
        "(shared machine: absolute rates are noisy, the ratios come from one run).",
        "",
        f"Model: {r['model']}. Server: `igpo-env serve scorer` (one torch thread). Workers: processes, each "
        "SearchQA-v0 (default SynthWiki world) + InformationGainWrapper over RemoteScorer, oracle agent; "
        f"{r['window_s']} s per phase. A scored turn is one (transcript, gold answer) pair: the reset and each "
        "search turn of the oracle's episodes (so scored turns/s = env steps/s here).",
        "",
        "| workers | scored turns/s | vs 1 worker | episodes | scorer calls | pairs per scorer call |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for p in [*r["workers"], r["unbatched"]]:
        label = f"{p['n']}" + (" (no batching)" if p["server"] == "unbatched" else "")
        lines.append(
            f"| {label} | {p['scored_turns_per_s']} | {p.get('speedup_vs_1', '-')} | {p['episodes']} | "
            f"{p['scorer_calls']} | {p['mean_pairs_per_call']} |"
        )
    lines += [
        "",
        f"Batching gain at {r['unbatched']['n']} workers: **{r['batching_gain']}x** (max_batch "
        f"{r['servers']['batched']['max_batch']}, max_wait_ms {r['servers']['batched']['max_wait_ms']} vs "
        "max_batch 1).",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write ``scale.json`` / ``scale.md``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 s windows (under 3 minutes).")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="Output directory.")
    parser.add_argument("--model", default=None, help="Scorer model dir or packaged name (default: tiny fixture).")
    parser.add_argument("--seconds", type=float, default=None, help="Window per phase (default 30; quick 10).")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from igpo_env.cache import cache_dir

    work = cache_dir("benchmarks", NAME)
    model = args.model or str(tiny_model_dir(work))
    seconds = args.seconds or WINDOW_S["quick" if args.quick else "full"]
    results: dict[str, Any] = {
        **run_info(NAME, argv),
        "model": args.model or "tiny fixture (igpo_env.scoring.tiny, random-init Qwen2)",
        "quick": args.quick,
    }
    t0 = time.perf_counter()
    results.update(run_benchmark(model, seconds, work))
    results["total_s"] = round(time.perf_counter() - t0, 1)
    write_results(args.out, NAME, results, write_markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
