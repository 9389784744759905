import math

import pytest

from igpo_env.scoring.math import aggregate_aliases, information_gain, potential


def test_prob_diff_hand_computed():
    # p: 0.25 -> 0.5 -> 0.4
    assert information_gain(math.log(0.25), math.log(0.5)) == pytest.approx(0.25)
    assert information_gain(math.log(0.5), math.log(0.4)) == pytest.approx(-0.1)
    assert information_gain(-2.0, -2.0) == 0.0


def test_log_prob_diff_hand_computed():
    assert information_gain(-3.0, -1.0, mode="log_prob_diff") == pytest.approx(2.0)
    assert information_gain(math.log(0.25), math.log(0.5), mode="log_prob_diff") == pytest.approx(math.log(2.0))


def test_prob_diff_telescopes():
    lps = [-4.0, -2.5, -3.0, -0.5, -0.1]
    total = sum(information_gain(a, b) for a, b in zip(lps[:-1], lps[1:], strict=True))
    assert total == pytest.approx(math.exp(lps[-1]) - math.exp(lps[0]))


def test_aggregate_aliases_hand_computed():
    lps = [math.log(0.2), math.log(0.6), math.log(0.1)]
    assert aggregate_aliases(lps, "first") == pytest.approx(math.log(0.2))
    assert aggregate_aliases(lps, "max") == pytest.approx(math.log(0.6))
    assert aggregate_aliases(lps, "max", mode="log_prob_diff") == pytest.approx(math.log(0.6))
    assert math.exp(aggregate_aliases(lps, "mean")) == pytest.approx(0.3)  # mean of p
    assert aggregate_aliases(lps, "mean", mode="log_prob_diff") == pytest.approx(math.log(0.012) / 3)
    # log-mean-exp stays finite for very negative log-probs
    assert aggregate_aliases([-1000.0, -1000.0], "mean") == pytest.approx(-1000.0)


def test_potential():
    assert potential(math.log(0.3)) == pytest.approx(0.3)
    assert potential(-7.0, mode="log_prob_diff") == -7.0


def test_validation():
    with pytest.raises(ValueError, match="`mode` must be one of"):
        information_gain(0.0, 0.0, mode="ratio")
    with pytest.raises(ValueError, match="`alias` must be one of"):
        aggregate_aliases([0.0], "min")
    with pytest.raises(ValueError, match="at least one alias"):
        aggregate_aliases([], "first")
