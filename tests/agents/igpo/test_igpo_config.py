from __future__ import annotations

import pytest

from agents.igpo.igpo_config import IGPOConfig

BASE = dict(output_dir="/tmp/igpo-config-test", report_to="none", use_cpu=True, bf16=False)


def test_defaults_and_help():
    cfg = IGPOConfig(**BASE)
    assert (cfg.ig_coef, cfg.ig_mode, cfg.ig_alias, cfg.normalization, cfg.gamma) == (
        1.0,
        "prob_diff",
        "first",
        "joint",
        1.0,
    )
    assert cfg.advantage == "paper" and cfg.scorer == "policy" and cfg.beta == 0.001 and cfg.epsilon == 0.2
    assert cfg.env_kwargs == {} and cfg.stop_strings == ["</search>", "</answer>"]
    for name in ("ig_coef", "ig_mode", "ig_alias", "normalization", "gamma", "advantage", "max_turns", "scorer"):
        assert IGPOConfig.__dataclass_fields__[name].metadata["help"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"ig_coef": -0.1}, "`ig_coef` must be a finite number >= 0, got -0.1"),
        ({"ig_mode": "diff"}, "`ig_mode` must be one of"),
        ({"ig_alias": "min"}, "`ig_alias` must be one of"),
        ({"normalization": "both"}, "`normalization` must be one of"),
        ({"gamma": 1.5}, r"`gamma` must be a number in \[0, 1\], got 1.5"),
        ({"advantage": "mine"}, "`advantage` must be one of"),
        ({"advantage": "released", "gamma": 0.9}, "set `gamma=1.0`"),
        ({"max_turns": 0}, "`max_turns` must be an int >= 1, got 0"),
        ({"max_turn_tokens": 0}, "`max_turn_tokens` must be an int >= 1, got 0"),
        ({"advantage_eps": 0.0}, "`advantage_eps` must be a finite number > 0, got 0.0"),
        ({"prompts_per_step": 0}, "`prompts_per_step` must be an int >= 1 or None, got 0"),
        ({"env_kwargs": "{top_k: 3}"}, "`env_kwargs` must be a JSON object"),
        ({"loss_type": "no_such_loss"}, "`loss_type` must be one of"),
        ({"max_completion_length": 8, "max_turn_tokens": 16}, "`max_completion_length` \\(8\\) must be >="),
        ({"scorer": ""}, "`scorer` must be"),
    ],
)
def test_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        IGPOConfig(**BASE, **kwargs)


def test_prompts_per_step_sets_the_batch_and_env_kwargs_parse_from_json():
    cfg = IGPOConfig(**BASE, num_generations=2, prompts_per_step=3, env_kwargs='{"top_k": 2}')
    assert cfg.per_device_train_batch_size == 6 and cfg.env_kwargs == {"top_k": 2}
    assert IGPOConfig(**BASE, num_generations=2, per_device_train_batch_size=4).per_device_train_batch_size == 4
    with pytest.raises(TypeError, match="JSON-serializable"):
        IGPOConfig(**BASE, env_kwargs={"retriever": object()})
