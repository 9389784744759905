"""IGPOTrainer overrides private GRPOTrainer hooks: fail loudly, naming the hook, when a TRL release changes them.

The pin in pyproject.toml (``trl>=X,<Y``) is the range these hooks were tested on; before widening it, run this file
against the new TRL and read agents/igpo/igpo_trainer.py's hooks again.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
import trl
from packaging.requirements import Requirement
from trl import GRPOTrainer

from agents.igpo.igpo_trainer import IGPOTrainer

PYPROJECT = Path(__file__).resolve().parents[3] / "pyproject.toml"

OVERRIDDEN = {
    "__init__": ("self", "model", "reward_funcs", "args", "train_dataset", "eval_dataset", "processing_class"),
    "_calculate_rewards": ("self", "inputs", "prompts", "completions", "completion_ids_list"),
    "_generate_and_score_completions": ("self", "inputs"),
}
"""GRPOTrainer methods IGPOTrainer overrides -> the leading parameters it relies on (calls ``super()`` with)."""

CALLED = {
    "_generate": ("self", "prompts"),
    "_compute_loss": ("self", "model", "inputs"),
}
"""GRPOTrainer methods IGPOTrainer relies on without overriding: the rollout_func call site and the loss that reads
the per-token ``advantages`` it writes."""


def _params(fn) -> tuple[str, ...]:
    return tuple(inspect.signature(fn).parameters)


def _trl() -> str:
    return f"TRL {trl.__version__}"


def test_installed_trl_is_in_the_pinned_range():
    (line,) = re.findall(r'^\s*"(trl\b[^"]*)",', PYPROJECT.read_text(), flags=re.MULTILINE)
    spec = Requirement(line)
    assert spec.specifier.contains(trl.__version__), (
        f"{_trl()} is outside pyproject's pin {spec}: IGPOTrainer's overridden GRPOTrainer hooks were tested on the "
        "pinned range only"
    )
    assert not spec.specifier.contains("99.0"), f"the TRL pin {spec} needs an upper bound"


@pytest.mark.parametrize("hook", sorted(OVERRIDDEN))
def test_overridden_hook_signatures(hook):
    assert hasattr(GRPOTrainer, hook), f"{_trl()} has no GRPOTrainer.{hook}, which IGPOTrainer overrides"
    got = _params(getattr(GRPOTrainer, hook))
    expected = OVERRIDDEN[hook]
    assert got[: len(expected)] == expected, (
        f"{_trl()} changed GRPOTrainer.{hook}{inspect.signature(getattr(GRPOTrainer, hook))}; IGPOTrainer.{hook} "
        f"expects the parameters {expected}"
    )
    if hook != "__init__":
        assert _params(getattr(IGPOTrainer, hook)) == got, f"IGPOTrainer.{hook} no longer matches GRPOTrainer.{hook}"


def test_rollout_func_and_env_mask_contract():
    assert "rollout_func" in _params(GRPOTrainer.__init__), f"{_trl()}: GRPOTrainer no longer takes `rollout_func`"
    for hook, expected in CALLED.items():
        got = _params(getattr(GRPOTrainer, hook, lambda: None))
        assert got == expected, f"{_trl()} changed GRPOTrainer.{hook}: parameters {got}; IGPOTrainer uses {expected}"
    source = inspect.getsource(GRPOTrainer._generate)
    assert "self.rollout_func(prompts, self)" in source, (
        f"{_trl()}: GRPOTrainer._generate no longer calls rollout_func(prompts, trainer)"
    )
    assert '"env_mask"' in source, f"{_trl()}: GRPOTrainer._generate no longer reads the rollout's `env_mask`"
    assert "advantages" in inspect.getsource(GRPOTrainer._compute_loss), (
        f"{_trl()}: GRPOTrainer._compute_loss no longer reads inputs['advantages'], which IGPOTrainer sets per token"
    )


def test_vllm_generate_contract():
    from trl.generation.vllm_generation import VLLMGeneration

    got = _params(VLLMGeneration.generate)
    assert got[:4] == ("self", "prompts", "images", "num_generations"), (
        f"{_trl()} changed VLLMGeneration.generate{inspect.signature(VLLMGeneration.generate)}; "
        "IGPOTrainer._vllm_rollouts calls generate(prompts, images=None, num_generations=1)"
    )


def test_no_unlisted_override():
    shadowing = {n for n, v in vars(IGPOTrainer).items() if callable(v) and hasattr(GRPOTrainer, n)}
    assert shadowing == set(OVERRIDDEN), (
        f"IGPOTrainer methods that shadow a {_trl()} GRPOTrainer method: {sorted(shadowing)}; list each in "
        f"OVERRIDDEN (a TRL release may have added one of IGPOTrainer's private names)"
    )
