"""The Checker: every problem of a config collected as a one-line ConfigError, not just the first."""

import math

from b2diffurl.configs import get
from b2diffurl.errors import ConfigError


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Checker:
    """Collects problems; each check returns whether it passed, so dependent checks can be skipped."""

    def __init__(self, config):
        self.config = config
        self.problems = []

    def require(self, ok, field, value, text):
        if not ok:
            self.problems.append(ConfigError(field, value, text))
        return bool(ok)

    def integer(self, field, low, high=None, hint=""):
        """``field`` is an int in low..high."""
        value = get(self.config, field)
        if not self.require(is_int(value), field, value, f"must be an integer{hint}"):
            return False
        if high is not None:
            return self.require(low <= value <= high, field, value, f"is outside {low}..{high}{hint}")
        return self.require(value >= low, field, value, f"must be >= {low}{hint}")

    def number(self, field, low=None, *, above=False, below=None, allow_inf=False, hint=""):
        """``field`` is a number (finite unless ``allow_inf``, never NaN), >= low (> low if ``above``), < below."""
        value = get(self.config, field)
        if not self.require(is_number(value) and not math.isnan(value), field, value, f"must be a number{hint}"):
            return False
        if not self.require(allow_inf or math.isfinite(value), field, value, f"must be finite{hint}"):
            return False
        if low is not None and not self.require(
            value > low if above else value >= low, field, value, f"must be {'>' if above else '>='} {low:g}{hint}"
        ):
            return False
        return below is None or self.require(value < below, field, value, f"must be < {below:g}{hint}")

    def flag(self, field):
        value = get(self.config, field)
        return self.require(isinstance(value, bool), field, value, "must be True or False")

    def one_of(self, field, choices, text):
        """``field`` is one of ``choices``; ``text`` is the line's fix."""
        value = get(self.config, field)
        return self.require(value in choices, field, value, text)

    def raise_first(self):
        """Raise the first problem, carrying all of them (``err.problems``), if there is any."""
        if self.problems:
            first = self.problems[0]
            first.problems = list(self.problems)
            raise first
