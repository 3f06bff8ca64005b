"""Number options whose ranges read in words (``N [0 or more]``), in ``--help`` and in errors.

click shows a range as ``x>=0`` and says "is not in the range x>=0". Every
command's number options get these types when the command is loaded, so
this module is kept small: the rest of the parser's wording
(:mod:`._usage`) is imported only when there is an error to word.
"""

from __future__ import annotations

from typing import Any

from typer._click import types as click_types


def _range_in_words(kind: Any, *, whole: bool) -> str:
    """``0 or more``, ``1 to 10``, ``more than 0``: a click range's bounds as people say them."""
    low, high = kind.min, kind.max
    if whole:  # an open bound of whole numbers is the next whole number
        low = None if low is None else low + 1 if kind.min_open else low
        high = None if high is None else high - 1 if kind.max_open else high
    low_words = None if low is None else f"more than {low}" if kind.min_open and not whole else f"{low}"
    high_words = None if high is None else f"less than {high}" if kind.max_open and not whole else f"{high}"
    if low_words is not None and high_words is not None:
        return f"{low_words} to {high_words}" if whole else f"{low_words} and {high_words}"
    if low_words is not None:
        return low_words if low_words.startswith("more") else f"{low_words} or more"
    return f"{high_words}" if str(high_words).startswith("less") else f"{high_words} or less"


def _check_range(kind: Any, number: float, param: Any, ctx: Any, *, whole: bool) -> None:
    if (kind.min is not None and (number < kind.min or (kind.min_open and number == kind.min))) or (
        kind.max is not None and (number > kind.max or (kind.max_open and number == kind.max))
    ):
        kind.fail(f"{value_text(number)} is out of range; give {_range_in_words(kind, whole=whole)}", param, ctx)


def value_text(number: float) -> str:
    return f"{number:g}" if isinstance(number, float) else str(number)


class WordedIntRange(click_types.IntRange):
    """An int range that says its bounds in words, in ``--help`` and in errors."""

    def _describe_range(self) -> str:
        return _range_in_words(self, whole=True)

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        try:
            number = int(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a whole number; give {self._describe_range()}", param, ctx)
        _check_range(self, number, param, ctx, whole=True)
        return number


class WordedFloatRange(click_types.FloatRange):
    """A number range (seconds, say) that says its bounds in words, in ``--help`` and in errors."""

    def _describe_range(self) -> str:
        return _range_in_words(self, whole=False)

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number; give {self._describe_range()}", param, ctx)
        if number != number:  # NaN compares false with every bound
            self.fail(f"{value!r} is not a number; give {self._describe_range()}", param, ctx)
        _check_range(self, number, param, ctx, whole=False)
        return number


def word_int_ranges(command: Any) -> None:
    """Give the number-range options of ``command`` a metavar (``N``) and a range in words."""
    for param in command.params:
        kind = getattr(param, "type", None)
        if isinstance(kind, click_types.IntRange) and not isinstance(kind, WordedIntRange):
            param.type = WordedIntRange(kind.min, kind.max, kind.min_open, kind.max_open, kind.clamp)
            if getattr(param, "metavar", None) is None:
                param.metavar = "N"
        elif isinstance(kind, click_types.FloatRange) and not isinstance(kind, WordedFloatRange):
            param.type = WordedFloatRange(kind.min, kind.max, kind.min_open, kind.max_open, kind.clamp)
