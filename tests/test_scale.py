"""Smoke test of the scale benchmark's worker pool and phase accounting against an in-process stub scorer server."""

import pytest

from benchmarks.scale import run_phase, workers, write_markdown
from igpo_env._http import ServerThread
from igpo_env.scoring.base import OverlapScorer
from igpo_env.scoring.server import create_app


@pytest.mark.slow
def test_one_worker_phase_counts_scored_turns(tmp_path):
    app = create_app(OverlapScorer(), max_wait_ms=1)
    with ServerThread(app) as server, workers(1, {"batched": server.url}) as pipes:
        phase = run_phase(pipes, 1, "batched", server.url, seconds=0.5)
    assert phase["n"] == 1 and phase["episodes"] >= 1 and phase["window_s"] >= 0.5
    # every reset and search turn of the oracle's episodes is one scored pair, counted by client and server alike
    assert phase["scored_turns"] == phase["server_scored_pairs"] >= 2 * phase["episodes"]
    assert phase["scorer_calls"] >= 1
    assert phase["scored_turns_per_s"] == pytest.approx(phase["scored_turns"] / phase["window_s"], rel=0.01)
    result = {
        "command": "python -m benchmarks.scale --quick",
        "timestamp": "now",
        "machine": "test",
        "load_average": [0.0],
        "model": "stub",
        "window_s": 0.5,
        "workers": [{**phase, "speedup_vs_1": 1.0}],
        "unbatched": {**phase, "server": "unbatched"},
        "batching_gain": 1.0,
        "servers": {"batched": {"max_batch": 64, "max_wait_ms": 5.0}},
    }
    write_markdown(result, tmp_path / "scale.md")
    assert "| 1 (no batching) |" in (tmp_path / "scale.md").read_text()
