"""Mean and standard error of a sample of numbers: the rule behind the reports' "mean ± SE".

SE is the sample standard deviation (n - 1 in the denominator) over sqrt(n), with the arithmetic of
Python's :mod:`statistics` module (``fmean``: a correctly rounded sum; ``stdev``: exact sums of
squares), so the same values give the same digits on every machine. Pure Python: no torch, no numpy.
"""

import math
import statistics


def mean_se(values):
    """(mean, SE, n) of an iterable of numbers; SE None for n < 2, (None, None, 0) for no values.

    A single value is returned as it is (not converted to float)."""
    values = list(values)
    if not values:
        return None, None, 0
    if len(values) == 1:
        return values[0], None, 1
    return statistics.fmean(values), statistics.stdev(values) / math.sqrt(len(values)), len(values)
