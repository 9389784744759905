"""How fast SynthWiki worlds are generated and written, and how much memory it takes, from 10k to 1M passages.

Each size runs in its own subprocess (so peak RSS is per size) and reports passages/s, the seconds per phase (world
model, corpus rendering + writing, question generation + writing), peak RSS and bytes written. The issue's targets:
1M passages in <= 10 min and <= 4 GB RSS.

Run: ``python -m benchmarks.synthwiki_scale [--quick] [--out DIR]`` (``--quick`` skips 1M).
Writes ``synthwiki_scale.json`` (``sizes[*].passages_per_s`` and ``peak_rss_mb``), ``synthwiki_scale.md`` and
``synthwiki_scale.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZES = (10_000, 100_000, 1_000_000)
QUICK_SIZES = (10_000, 100_000)
TARGET_SECONDS_1M = 600
TARGET_RSS_MB = 4096
DEFAULT_OUT = Path(__file__).resolve().parent / "results"
NAME = "synthwiki_scale"


def _child(passages: int, seed: int) -> dict:
    """Build one world in a temp dir (this process only) and return its numbers."""
    from igpo_env.data.synthwiki import build_world

    tmp = Path(tempfile.mkdtemp(prefix="synthwiki-bench-"))
    try:
        timings: dict[str, float] = {}
        start = time.perf_counter()
        out = build_world(tmp / "w", passages=passages, seed=seed, verbose=False, timings=timings)
        seconds = time.perf_counter() - start
        meta = json.loads((out / "world.json").read_text(encoding="utf-8"))
        sizes = {p.name: p.stat().st_size for p in out.iterdir()}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    # ru_maxrss is in KiB on Linux, bytes on macOS
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss_mb = rss / 2**20 if sys.platform == "darwin" else rss / 1024
    return {
        "passages": passages,
        "questions": sum(meta["questions"].values()),
        "seconds": round(seconds, 3),
        "passages_per_s": round(passages / seconds, 1),
        "phase_seconds": {k: round(v, 3) for k, v in timings.items()},
        "peak_rss_mb": round(rss_mb, 1),
        "corpus_mb": round(sizes["corpus.jsonl"] / 2**20, 1),
        "qa_mb": round(sum(v for k, v in sizes.items() if k != "corpus.jsonl") / 2**20, 1),
    }


def _run_size(passages: int, seed: int) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.synthwiki_scale", "--child", str(passages), "--seed", str(seed)]
    load_before = os.getloadavg()[0]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=Path(__file__).resolve().parent.parent)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child for {passages} passages failed:\n{proc.stderr[-2000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["load_avg_1min_before"] = round(load_before, 2)
    return result


def _markdown(results: dict) -> str:
    lines = [
        "# SynthWiki generation scale",
        "",
        f"Machine: {results['machine']['cpus']} CPUs ({results['machine']['platform']}), shared with other jobs: "
        "see the load average column. Each size runs in a fresh subprocess.",
        "",
        "| passages | questions | seconds | passages/s | world s | corpus s | questions s | peak RSS MB | corpus MB | "
        "load avg |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["sizes"]:
        ph = r["phase_seconds"]
        lines.append(
            f"| {r['passages']:,} | {r['questions']:,} | {r['seconds']:.1f} | {r['passages_per_s']:,.0f} | "
            f"{ph['world']:.1f} | {ph['corpus']:.1f} | {ph['questions']:.1f} | {r['peak_rss_mb']:,.0f} | "
            f"{r['corpus_mb']:,.0f} | {r['load_avg_1min_before']} |"
        )
    lines += ["", f"Targets: 1M passages in <= {TARGET_SECONDS_1M} s and <= {TARGET_RSS_MB} MB peak RSS."]
    big = [r for r in results["sizes"] if r["passages"] >= 1_000_000]
    if big:
        r = big[0]
        ok = r["seconds"] <= TARGET_SECONDS_1M and r["peak_rss_mb"] <= TARGET_RSS_MB
        lines.append(f"1M: {r['seconds']:.0f} s, {r['peak_rss_mb']:,.0f} MB -> {'met' if ok else 'NOT met'}.")
    else:
        lines.append("1M skipped (--quick).")
    return "\n".join(lines) + "\n"


def _plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r["passages"] for r in results["sizes"]]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
    ax[0].plot(sizes, [r["passages_per_s"] for r in results["sizes"]], "o-")
    ax[0].set(xscale="log", xlabel="passages", ylabel="passages / s", title="throughput (shared CPU)")
    ax[0].set_ylim(bottom=0)
    ax[1].plot(sizes, [r["peak_rss_mb"] for r in results["sizes"]], "o-")
    ax[1].set(xscale="log", yscale="log", xlabel="passages", ylabel="peak RSS (MB)", title="memory")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def make_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.synthwiki_scale", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="Skip 1M passages.")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="Output directory (default %(default)s).")
    p.add_argument("--seed", type=int, default=0, help="World seed.")
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit code."""
    args = make_parser().parse_args(argv)
    if args.child is not None:
        print(json.dumps(_child(args.child, args.seed)))
        return 0
    from tqdm.auto import tqdm

    sizes = QUICK_SIZES if args.quick else SIZES
    results = {
        "benchmark": NAME,
        "quick": args.quick,
        "seed": args.seed,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "sizes": [],
    }
    for n in tqdm(sizes, desc="sizes"):
        r = _run_size(n, args.seed)
        results["sizes"].append(r)
        print(f"{n:>9,} passages: {r['seconds']:7.1f} s, {r['passages_per_s']:9,.0f} passages/s, "
              f"peak RSS {r['peak_rss_mb']:,.0f} MB")  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{NAME}.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (out / f"{NAME}.md").write_text(_markdown(results), encoding="utf-8")
    _plot(results, out / f"{NAME}.png")
    print(f"wrote {out / NAME}.json / .md / .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
