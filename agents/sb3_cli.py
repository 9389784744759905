"""``igpo-env sb3 train``: train the stable-baselines3 candidate-action agent (:mod:`agents.sb3`) on SearchQA-v0.

Flags are generated from :class:`agents.sb3.SB3Config` by ``trl.TrlParser`` (``--config FILE.yaml`` + flags, each
with an underscore and a dash spelling). Heavy libraries are imported inside the functions.

Example:
    >>> parse_train_args(["--reward", "outcome", "--total-timesteps", "64"]).output_dir
    'runs/sb3-outcome-seed0'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agents.sb3 import SB3Config

__all__ = ["train_make_parser", "parse_train_args", "train_main"]


def train_make_parser(prog: str = "igpo-env sb3 train") -> Any:
    """Build the ``igpo-env sb3 train`` parser: ``trl.TrlParser`` over :class:`~agents.sb3.SB3Config`."""
    from trl import TrlParser

    from agents.sb3 import SB3Config

    description = "Train a MaskablePPO candidate-action agent on SearchQA-v0 (outcome-only or IG rewards)."
    parser = TrlParser((SB3Config,), prog=prog, description=description)
    parser.add_argument("--config", default=None, help="YAML file of SB3Config fields.")
    return parser


def parse_train_args(argv: Sequence[str] | None = None) -> SB3Config:
    """Parse ``igpo-env sb3 train`` arguments into an :class:`~agents.sb3.SB3Config`."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    config, *_ = train_make_parser().parse_args_and_config(args)  # (SB3Config, Namespace(config=...))
    return config


def train_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``igpo-env sb3 train``: train, print the dev F1 curve, save under ``output_dir``."""
    from agents.sb3 import train

    config = parse_train_args(argv)
    result = train(config)
    for point in result.curve:
        print(f"step {point['timesteps']:>7d}  dev F1 {point['f1']:.3f}  EM {point['em']:.3f}")
    print(f"saved to {config.output_dir} (TensorBoard: tensorboard --logdir {config.output_dir}/tb)")
    return 0
