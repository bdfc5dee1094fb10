"""Averaging over seeds: a group's mean and standard error, per point of a curve or per table cell."""

from dataclasses import dataclass

from b2diffurl import stats


@dataclass(frozen=True)
class Stat:
    """A group's value: ``mean`` over ``n`` seeds with standard error ``se`` (None when unknown).

    ``source`` says where ``se`` comes from: "seeds" (the spread over n >= 2 seeds), "eval" (one
    evaluation's own SE), "round" (one training round's own SE), or "" when ``se`` is None.
    """

    mean: float
    se: float | None
    n: int
    source: str


def mean_se(values):
    """Mean and standard error over seeds.

    values: list[tuple[float, float | None]], one ``(value, own_se)`` per seed, len >= 1; ``own_se`` is
    the run's own standard error, used only when there is a single seed.
    Returns Stat; n >= 2: se = stdev (ddof 1) / sqrt(n) (:func:`b2diffurl.stats.mean_se`), source
    "seeds"; n == 1: se = own_se, source "eval" (or "" when own_se is None).
    """
    if not values:
        raise ValueError("mean_se needs at least one value")
    if len(values) == 1:
        value, own = values[0]
        return Stat(value, own, 1, "eval" if own is not None else "")
    return Stat(*stats.mean_se(v for v, _ in values), "seeds")


def average_curves(curves, own_source="eval"):
    """Average per-seed curves of one group at the x values every seed has.

    curves: list[dict[int, tuple[float, float | None]]], one per seed: x -> (value, own_se); empty
    curves (seeds without any point) are ignored.
    Returns (points, dropped): points = list[tuple[int, Stat]] sorted by x; dropped = the number of x
    values present in some seeds but not all (left out). ``own_source`` names a single seed's own SE.
    """
    curves = [c for c in curves if c]
    if not curves:
        return [], 0
    common = set.intersection(*(set(c) for c in curves))
    every = set.union(*(set(c) for c in curves))
    points = []
    for x in sorted(common):
        stat = mean_se([c[x] for c in curves])
        if stat.source == "eval":
            stat = Stat(stat.mean, stat.se, stat.n, own_source)
        points.append((x, stat))
    return points, len(every - common)


def se_note(ns, own="the evaluation's own SE"):
    """What an error bar or band means, for the seed counts ``ns`` (iterable of int) it is drawn for.

    Never says "over seeds" for a single seed: all n >= 2 -> "±1 SE over seeds"; all n == 1 ->
    "±1 SE: <own> (one seed each)"; mixed -> "±1 SE over seeds (n ≥ 2), else <own>".
    """
    ns = set(ns)
    if ns and min(ns) >= 2:
        return "±1 SE over seeds"
    if ns == {1}:
        return f"±1 SE: {own} (one seed each)"
    return f"±1 SE over seeds (n ≥ 2), else {own}"


def plain(x):
    """A number for a CSV cell: full precision, empty for None."""
    return "" if x is None else repr(float(x))
