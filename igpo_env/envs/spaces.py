"""Text spaces for language environments: any unicode string up to a maximum length.

:class:`UnicodeText` is a :class:`gymnasium.spaces.Text` whose ``contains`` accepts every ``str`` (any code point)
whose length lies in ``[min_length, max_length]``. ``sample`` draws from a finite sampling charset (ASCII printable
characters, whitespace, the protocol's tag characters and a few non-ASCII letters and symbols), so every sample is a
member of the space.
"""

from __future__ import annotations

import string
from typing import Any

from gymnasium.spaces import Text

from igpo_env._validation import check_int

__all__ = ["UnicodeText", "SAMPLE_CHARSET"]

SAMPLE_CHARSET = string.ascii_letters + string.digits + string.punctuation + " \n" + "éüßøжЯ中文字ـ🙂"
"""Characters :meth:`UnicodeText.sample` draws from (``contains`` accepts any character)."""


class UnicodeText(Text):
    """A text space holding any unicode string of length ``min_length..max_length``.

    Args:
        max_length: Longest string (in characters) in the space.
        min_length: Shortest string in the space.
        sample_charset: Characters used by :meth:`sample` (membership is not restricted to them).
        seed: Seed of the space's sampler.

    Example:
        >>> space = UnicodeText(8, seed=0)
        >>> space.contains("中文 ok!"), space.contains("x" * 9), space.contains(3)
        (True, False, False)
        >>> space.contains(space.sample())
        True

    Change logs:
        v0.1.0: added.
    """

    def __init__(
        self, max_length: int, *, min_length: int = 0, sample_charset: str = SAMPLE_CHARSET, seed: Any = None
    ) -> None:
        check_int("max_length", max_length, minimum=1)
        super().__init__(max_length, min_length=min_length, charset=sample_charset, seed=seed)

    def contains(self, x: Any) -> bool:
        """Return True for any ``str`` whose length lies within the space's bounds."""
        return isinstance(x, str) and self.min_length <= len(x) <= self.max_length

    def __repr__(self) -> str:
        """Show the bounds (the charset is any unicode)."""
        return f"UnicodeText({self.min_length}, {self.max_length})"

    def __eq__(self, other: object, /) -> bool:
        """Spaces are equal when their bounds are (the sampling charset does not change membership)."""
        return (
            isinstance(other, UnicodeText)
            and self.min_length == other.min_length
            and self.max_length == other.max_length
        )
