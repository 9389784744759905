from benchmarks import synthwiki_scale


def test_child_measures_one_size_and_markdown_reports_it():
    r = synthwiki_scale._child(200, seed=0)
    assert r["passages"] == 200 and r["questions"] == 120
    assert r["passages_per_s"] > 0 and r["peak_rss_mb"] > 0
    assert set(r["phase_seconds"]) == {"world", "corpus", "questions"}
    r["load_avg_1min_before"] = 0.0
    big = {**r, "passages": 1_000_000, "seconds": 100.0}
    md = synthwiki_scale._markdown({"machine": {"cpus": 2, "platform": "test"}, "sizes": [r, big]})
    assert "| 200 |" in md and "-> met" in md
