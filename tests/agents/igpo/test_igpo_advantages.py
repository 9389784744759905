"""Hand-worked checks of the IGPO advantage math (paper joint/separate, two gammas, released)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agents.igpo.advantages import (
    group_indices,
    paper_turn_advantages,
    released_token_advantages,
    released_token_rewards,
    turn_to_token_advantages,
)

EPS = 1e-6

# One group of two rollouts: rollout A has turns (IG 0.2, IG 0.4, outcome 1.0), rollout B (IG 0.0, outcome 0.0).
IG = [[0.2, 0.4], [0.0]]
OUT = [1.0, 0.0]


def _z(values, x):
    values = np.asarray(values, dtype=float)
    return (x - values.mean()) / (math.sqrt(((values - values.mean()) ** 2).mean()) + EPS)


def test_joint_gamma_1_hand_worked():
    # joint pool: 0.2, 0.4, 1.0, 0.0, 0.0 -> mean 0.32, population var = (0.0144+0.0064+0.4624+0.1024*2)/5
    pool = [0.2, 0.4, 1.0, 0.0, 0.0]
    mean = 0.32
    std = math.sqrt((0.0144 + 0.0064 + 0.4624 + 0.1024 + 0.1024) / 5)
    z = [(x - mean) / (std + EPS) for x in pool]
    adv = paper_turn_advantages(IG, OUT, group_ids=[0, 0], normalization="joint", gamma=1.0)
    assert adv[0] == pytest.approx([z[0] + z[1] + z[2], z[1] + z[2], z[2]])
    assert adv[1] == pytest.approx([z[3] + z[4], z[4]])
    # the helper agrees with the literal numbers
    assert z[2] == pytest.approx(_z(pool, 1.0))


def test_joint_gamma_half():
    pool = [0.2, 0.4, 1.0, 0.0, 0.0]
    z = [_z(pool, x) for x in pool]
    adv = paper_turn_advantages(IG, OUT, group_ids=[0, 0], normalization="joint", gamma=0.5)
    assert adv[0] == pytest.approx([z[0] + 0.5 * (z[1] + 0.5 * z[2]), z[1] + 0.5 * z[2], z[2]])
    assert adv[1] == pytest.approx([z[3] + 0.5 * z[4], z[4]])


def test_separate_gamma_1_and_half():
    ig_pool, out_pool = [0.2, 0.4, 0.0], [1.0, 0.0]
    zi = [_z(ig_pool, x) for x in ig_pool]
    zo = [_z(out_pool, x) for x in out_pool]
    assert zo == pytest.approx([1.0, -1.0], abs=1e-5)
    adv = paper_turn_advantages(IG, OUT, group_ids=[0, 0], normalization="separate", gamma=1.0)
    assert adv[0] == pytest.approx([zi[0] + zi[1] + zo[0], zi[1] + zo[0], zo[0]])
    assert adv[1] == pytest.approx([zi[2] + zo[1], zo[1]])
    adv = paper_turn_advantages(IG, OUT, group_ids=[0, 0], normalization="separate", gamma=0.5)
    assert adv[0] == pytest.approx([zi[0] + 0.5 * zi[1] + 0.25 * zo[0], zi[1] + 0.5 * zo[0], zo[0]])


def test_ig_coef_scales_ig_after_zscore_in_separate_and_before_in_joint():
    sep = paper_turn_advantages(IG, OUT, [0, 0], normalization="separate", ig_coef=2.0)
    base = paper_turn_advantages(IG, OUT, [0, 0], normalization="separate", ig_coef=1.0)
    # outcome-only turn is unchanged, IG contributions doubled
    assert sep[0][2] == pytest.approx(base[0][2])
    assert sep[0][1] - sep[0][2] == pytest.approx(2 * (base[0][1] - base[0][2]))
    joint = paper_turn_advantages(IG, OUT, [0, 0], normalization="joint", ig_coef=2.0)
    pool = [0.4, 0.8, 1.0, 0.0, 0.0]
    assert joint[0][2] == pytest.approx(_z(pool, 1.0))


def test_ig_coef_zero_is_outcome_only_grpo():
    adv = paper_turn_advantages(IG, OUT, [0, 0], normalization="joint", ig_coef=0.0)
    assert adv[0] == pytest.approx([1.0, 1.0, 1.0], abs=1e-5)
    assert adv[1] == pytest.approx([-1.0, -1.0], abs=1e-5)


def test_groups_are_normalized_independently():
    adv = paper_turn_advantages([[], [], [], []], [1.0, 0.0, 5.0, 5.0], group_ids=["a", "a", "b", "b"])
    assert adv[0] == pytest.approx([1.0], abs=1e-5) and adv[1] == pytest.approx([-1.0], abs=1e-5)
    assert adv[2] == [0.0] and adv[3] == [0.0]  # constant group: zero advantage, no NaN
    # interleaved group ids are respected (no contiguity assumption)
    adv2 = paper_turn_advantages([[], [], [], []], [1.0, 5.0, 0.0, 5.0], group_ids=["a", "b", "a", "b"])
    assert adv2[0] == pytest.approx(adv[0]) and adv2[2] == pytest.approx(adv[1])
    assert group_indices(["a", "b", "a", "b"]) == [[0, 2], [1, 3]]


def test_released_hand_worked():
    # rollout A: 6 tokens, IG 0.5 on the last observation token (index 2), outcome 1 on the last token
    ra = released_token_rewards(6, ig_positions=[2], ig_rewards=[0.5], outcome=1.0)
    rb = released_token_rewards(4, ig_positions=[], ig_rewards=[], outcome=0.0)
    assert ra.tolist() == [0, 0, 0.5, 0, 0, 1.0]
    adv = released_token_advantages([ra, rb], group_ids=[0, 0])
    ret_a = [1.5, 1.5, 1.5, 1.0, 1.0, 1.0]
    ret_b = [0.0, 0.0, 0.0, 0.0]
    base = [(ret_a[j] + ret_b[j]) / 2 if j < 4 else ret_a[j] for j in range(6)]
    assert adv[0].tolist() == pytest.approx([ret_a[j] - base[j] for j in range(6)])
    assert adv[1].tolist() == pytest.approx([ret_b[j] - base[j] for j in range(4)])
    # no std normalization: scaling rewards scales advantages
    adv2 = released_token_advantages([2 * ra, 2 * rb], group_ids=[0, 0])
    assert adv2[0].tolist() == pytest.approx((2 * adv[0]).tolist())


def test_turn_broadcast_and_validation():
    assert turn_to_token_advantages([1.0], [(1, 3)], 4).tolist() == [0.0, 1.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="outside the completion"):
        turn_to_token_advantages([1.0], [(1, 9)], 4)
    with pytest.raises(ValueError, match="`normalization` must be one of"):
        paper_turn_advantages(IG, OUT, [0, 0], normalization="both")
    with pytest.raises(ValueError, match=r"`gamma` must be a number in \[0, 1\], got 1.5"):
        paper_turn_advantages(IG, OUT, [0, 0], gamma=1.5)
    with pytest.raises(ValueError, match="one entry per rollout"):
        paper_turn_advantages(IG, OUT, [0])
    with pytest.raises(ValueError, match="`ig_coef` must be a finite number >= 0, got -1"):
        paper_turn_advantages(IG, OUT, [0, 0], ig_coef=-1)
    with pytest.raises(ValueError, match="`eps` must be a finite number > 0, got 0"):
        paper_turn_advantages(IG, OUT, [0, 0], eps=0)
    with pytest.raises(ValueError, match="`length` must be an int >= 1, got 0"):
        released_token_rewards(0, [], [], 1.0)
    with pytest.raises(ValueError, match="outside the completion"):
        released_token_rewards(3, [5], [0.1], 1.0)
