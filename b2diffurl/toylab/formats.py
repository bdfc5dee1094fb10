"""How docs/RESULTS.md writes its numbers, and the command it names for what is still to run."""

from b2diffurl.toylab.protocol import PERCENT

COMMAND = "python -m b2diffurl.toyworld benchmark"


def fmt(value, metric, signed=False):
    if value is None:
        return "-"
    if metric in PERCENT:
        return f"{value * 100:+.1f} pts" if signed else f"{value:.1%}"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def fmt_se(mean, se, n, metric, signed=False):
    if mean is None:
        return "-"
    if se is None:
        return f"{fmt(mean, metric, signed)} (n={n})"
    unit = (lambda v: f"{v * 100:.1f}") if metric in PERCENT else (lambda v: f"{v:.4f}")
    return f"{fmt(mean, metric, signed)} ± {unit(se)} (n={n})"
