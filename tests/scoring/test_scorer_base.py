import math

import pytest

from igpo_env.scoring import CachingScorer, OverlapScorer, Scorer
from igpo_env.scoring.base import context_text, validate_score_args
from igpo_env.scoring.hf import HFScorer


def test_overlap_scorer_values():
    s = OverlapScorer(hit=0.5, miss=0.1)
    (a, b) = s.score([[{"role": "user", "content": "Ilka went home"}], "nothing"], ["Ilka Maren", "x"])
    assert a.token_logprobs == pytest.approx((math.log(0.5), math.log(0.1)))
    assert b.prob == pytest.approx(0.1)


def test_protocols():
    assert isinstance(OverlapScorer(), Scorer) and not isinstance(OverlapScorer(), CachingScorer)
    assert issubclass(HFScorer, CachingScorer)


def test_validation_messages():
    with pytest.raises(ValueError, match=r"`hit` must be a number in \(0, 1\], got 0.0"):
        OverlapScorer(hit=0.0)
    with pytest.raises(TypeError, match="must be lists"):
        validate_score_args("abc", ["a"])
    with pytest.raises(TypeError, match=r"`targets\[0\]` must be a str"):
        validate_score_args(["a"], [3])
    with pytest.raises(TypeError, match=r"`contexts\[0\]` must be a str or a list of messages"):
        validate_score_args([3], ["a"])
    with pytest.raises(ValueError, match=r"`targets\[1\]` is empty"):
        OverlapScorer().score(["a", "b"], ["a", ""])
    assert context_text("s") == "s"
