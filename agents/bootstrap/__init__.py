"""Policy LMs that can play SearchQA-v0 before any RL: the warm start (the default policy) and the tiny fixture.

Modules, each importing only the ones above it in this list (no import cycle; heavy libraries load inside functions):

- :mod:`~agents.bootstrap.common`: the report file name, the loss mask label, the device choice.
- :mod:`~agents.bootstrap.trajectories`: scripted SFT data (oracle / noisy-oracle episodes, reading transcripts).
- :mod:`~agents.bootstrap.sft`: the TRL ``SFTConfig`` and labels-only SFT trainer both builds use.
- :mod:`~agents.bootstrap.eval`: the quality report of a policy LM (dev F1 through the one evaluation loop).
- :mod:`~agents.bootstrap.fixture`: spec, tokenizer and model of the from-scratch tiny LM (a test fixture only).
- :mod:`~agents.bootstrap.build`: :func:`bootstrap`, the fixture build.
- :mod:`~agents.bootstrap.warm_start`: :func:`warm_start`, SFT of a pretrained LM (default: the packaged SmolLM2).
- :mod:`~agents.bootstrap.cli`: ``igpo-env bootstrap``.

Example:
    >>> from agents.bootstrap import FIXTURE_POLICY, SIZES, WARM_START
    >>> FIXTURE_POLICY in SIZES, WARM_START.steps > 0
    (True, True)
"""

from __future__ import annotations

from agents.bootstrap.build import bootstrap
from agents.bootstrap.common import DEVICES, REPORT_FILE, resolve_device
from agents.bootstrap.eval import quality_report
from agents.bootstrap.fixture import (
    CHAT_TEMPLATE,
    CONFIG_VERSION,
    FIXTURE_POLICY,
    SIZES,
    TAG_TOKENS,
    BootstrapSpec,
    default_model_dir,
    encode_transcript,
    make_model,
    train_tokenizer,
)
from agents.bootstrap.warm_start import DEFAULT_EVAL_QUESTIONS, WARM_START, WarmStartSpec, warm_start, warm_start_dir

__all__ = [
    "bootstrap",
    "warm_start",
    "warm_start_dir",
    "quality_report",
    "WarmStartSpec",
    "WARM_START",
    "DEFAULT_EVAL_QUESTIONS",
    "BootstrapSpec",
    "SIZES",
    "FIXTURE_POLICY",
    "CONFIG_VERSION",
    "CHAT_TEMPLATE",
    "TAG_TOKENS",
    "DEVICES",
    "REPORT_FILE",
    "resolve_device",
    "default_model_dir",
    "train_tokenizer",
    "make_model",
    "encode_transcript",
]
