"""Shared bookkeeping of the benchmark scripts: the run header and the JSON + Markdown results files."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["run_info", "write_results"]


def run_info(name: str, argv: list[str] | None) -> dict[str, Any]:
    """Describe a run of ``benchmarks.NAME``: the command, a UTC timestamp, the machine, the load average at start.

    Example:
        >>> run_info("scale", ["--quick"])["command"]
        'python -m benchmarks.scale --quick'
    """
    args = sys.argv[1:] if argv is None else argv
    return {
        "command": " ".join([f"python -m benchmarks.{name}", *args]),
        "timestamp": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": f"{os.cpu_count()} CPU cores, {platform.machine()}, no GPU",
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def write_results(
    out: Path, name: str, results: dict[str, Any], write_markdown: Callable[[dict[str, Any], Path], None]
) -> None:
    """Write ``out/NAME.json`` (raw numbers) and ``out/NAME.md`` (tables), then print the Markdown."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    write_markdown(results, out / f"{name}.md")
    print((out / f"{name}.md").read_text(encoding="utf-8"))
