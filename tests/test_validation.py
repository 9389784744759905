import numpy as np
import pytest

from igpo_env._validation import check_choice, check_fraction, check_int, check_number


@pytest.mark.parametrize(
    ("kwargs", "value", "match"),
    [
        ({"minimum": 1}, 0, r"`x` must be an int >= 1, got 0"),
        ({"minimum": 1}, 1.5, r"`x` must be an int >= 1, got 1.5"),
        ({"minimum": 1}, True, r"`x` must be an int >= 1, got True"),
        ({"maximum": 3}, 4, r"`x` must be an int <= 3, got 4"),
        ({"minimum": 0, "maximum": 20}, 21, r"`x` must be an int in \[0, 20\], got 21"),
        ({"minimum": 1, "optional": True}, 0, r"`x` must be an int >= 1 or None, got 0"),
        ({}, "3", r"`x` must be an int, got '3'"),
    ],
)
def test_check_int_rejects(kwargs, value, match):
    with pytest.raises(ValueError, match=match):
        check_int("x", value, **kwargs)


def test_check_int_accepts():
    assert check_int("x", np.int64(3), minimum=1) == 3 and type(check_int("x", np.int64(3))) is int
    assert check_int("x", 20, minimum=0, maximum=20) == 20
    assert check_int("x", None, optional=True) is None
    with pytest.raises(ValueError, match="got None"):
        check_int("x", None)


@pytest.mark.parametrize(
    ("kwargs", "value", "match"),
    [
        ({"minimum": 0}, -1, r"`x` must be a finite number >= 0, got -1"),
        ({"minimum": 0.0, "strict": True}, 0.0, r"`x` must be a finite number > 0, got 0.0"),
        ({"maximum": 1, "strict": True}, 1, r"`x` must be a finite number < 1, got 1"),
        ({"minimum": 0, "maximum": 1}, 1.5, r"`x` must be a number in \[0, 1\], got 1.5"),
        ({"minimum": 0, "maximum": 1, "strict": True}, 0, r"in \(0, 1\), got 0"),
        ({"minimum": 0, "maximum": 1, "strict": "minimum"}, 0, r"in \(0, 1\], got 0"),
        ({"minimum": 0, "maximum": 1, "strict": "maximum"}, 1.0, r"in \[0, 1\), got 1.0"),
        ({"minimum": 0.5}, 0.25, r">= 0.5, got 0.25"),
        ({}, float("nan"), r"`x` must be a finite number, got nan"),
        ({}, float("inf"), r"`x` must be a finite number, got inf"),
        ({}, "1", r"`x` must be a finite number, got '1'"),
        ({}, False, r"got False"),
        ({"minimum": 1, "optional": True}, 0.5, r"`x` must be a finite number >= 1 or None, got 0.5"),
    ],
)
def test_check_number_rejects(kwargs, value, match):
    with pytest.raises(ValueError, match=match):
        check_number("x", value, **kwargs)


def test_check_number_accepts():
    assert check_number("x", 1, minimum=0, maximum=1, strict="minimum") == 1.0
    assert check_number("x", 0, minimum=0, maximum=1, strict="maximum") == 0.0
    assert check_number("x", np.float32(0.5), minimum=0) == 0.5
    assert check_number("x", None, optional=True) is None


def test_check_fraction_and_choice():
    assert check_fraction("share", 0) == 0.0 and check_fraction("share", 1) == 1.0
    with pytest.raises(ValueError, match=r"`share` must be a number in \[0, 1\], got -0.1"):
        check_fraction("share", -0.1)
    assert check_choice("role", None, ("user", "tool", None)) is None
    with pytest.raises(ValueError, match=r"`role` must be one of \('user', 'tool'\), got 'x'"):
        check_choice("role", "x", ("user", "tool"))
