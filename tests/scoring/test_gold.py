"""The one IG scoring path: alias expansion + aggregation, cache keys only to caching scorers."""

from __future__ import annotations

import math

import pytest

from igpo_env.scoring import OverlapScorer
from igpo_env.scoring.base import CachingScorer, is_caching_scorer
from igpo_env.scoring.gold import score_aliases, score_gold
from igpo_env.scoring.math import alias_targets
from igpo_env.types import TargetScore

MSGS = [{"role": "user", "content": "Karsel is the capital"}]


class KeyedSpy:
    """Caching scorer: records calls, scores log(0.5) per target word."""

    def __init__(self):
        self.calls, self.released = [], []

    def score(self, contexts, targets, cache_keys=None):
        self.calls.append((list(contexts), list(targets), cache_keys))
        return [TargetScore.from_logprobs([math.log(0.5)]) for _ in targets]

    def release(self, cache_keys):
        self.released.extend(cache_keys)


class ReleaseOnly(KeyedSpy):
    """Has release() but its score() takes no cache keys: must not get any."""

    def score(self, contexts, targets):
        return super().score(contexts, targets)


def test_alias_targets_and_errors():
    assert alias_targets(["a", "b"], "first") == ["a"] and alias_targets(("a", "b"), "mean") == ["a", "b"]
    with pytest.raises(ValueError, match="holds no gold answer"):
        alias_targets([], "max")
    with pytest.raises(TypeError, match="sequence of strings"):
        alias_targets("Karsel", "first")
    with pytest.raises(ValueError, match="`alias` must be one of"):
        alias_targets(["a"], "min")


def test_score_aliases_groups_pairs_in_row_order():
    seen = []

    def pairs(owner, targets):
        seen.append((owner, targets))
        return [math.log(len(t) / 10) for t in targets]

    out = score_aliases(pairs, [("ab", "abcd"), ("abc",)], alias="max")
    assert seen == [([0, 0, 1], ["ab", "abcd", "abc"])]
    assert [math.exp(x) for x in out] == pytest.approx([0.4, 0.3])
    with pytest.raises(ValueError, match="ground truth #1: .*no gold answer"):
        score_aliases(pairs, [("a",), ()], alias="first")
    with pytest.raises(ValueError, match="returned 1 scores for 2"):
        score_aliases(lambda o, t: [0.0], [("a", "b")], alias="max")


def test_is_caching_scorer_is_the_one_check():
    assert is_caching_scorer(KeyedSpy()) and isinstance(KeyedSpy(), CachingScorer)
    assert not is_caching_scorer(ReleaseOnly())  # isinstance(..., CachingScorer) would say yes
    assert isinstance(ReleaseOnly(), CachingScorer)
    assert not is_caching_scorer(OverlapScorer()) and not is_caching_scorer(object())


def test_score_gold_passes_keys_only_to_caching_scorers():
    spy = KeyedSpy()
    out = score_gold(spy, [MSGS, MSGS], [("Karsel", "K"), ("Oslo",)], alias="mean", cache_keys=["e0", "e1"])
    assert out == pytest.approx([math.log(0.5)] * 2)
    ((contexts, targets, keys),) = spy.calls
    assert targets == ["Karsel", "K", "Oslo"] and keys == ["e0", "e0", "e1"] and contexts == [MSGS] * 3
    plain = ReleaseOnly()
    score_gold(plain, [MSGS], [("Karsel",)], cache_keys=["e0"])
    assert plain.calls[0][2] is None
    with pytest.raises(ValueError, match="one key per transcript"):
        score_gold(spy, [MSGS], [("Karsel",)], cache_keys=["a", "b"])


def test_score_gold_renders_with_a_template():
    from igpo_env.scoring.templates import IGTemplate

    spy = KeyedSpy()
    score_gold(spy, [MSGS], [("Karsel",)], template=IGTemplate(pseudo_response="\nANSWER: "))
    (context,) = spy.calls[0][0]
    assert isinstance(context, str) and context.endswith("<|im_start|>assistant\n<think>\nANSWER: ")
