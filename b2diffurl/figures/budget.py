"""The reward-budget rule: which evaluation of a run a bar, table cell or CSV row stands for.

The paper compares methods at equal reward queries (training images scored by the reward), not at
equal rounds: methods that score different numbers of images per round reach a budget at different
rounds. So every bar, table cell and CSV row takes, per run and prompt set, the trained round picked
by :func:`pick`, and states the reward queries it stands for.
"""

DEFAULT_QUERIES = 25600


def pick(evaluations, queries):
    """The evaluation that stands for a run at a budget of ``queries`` reward queries.

    evaluations: iterable of Evaluation, one run's on one prompt set (base model and rounds);
    queries: int >= 0, the budget.
    Returns the trained-round evaluation (index >= 0) with the largest ``reward_queries`` <= queries,
    the later round on equal queries; None when no trained round is at or below the budget (none
    evaluated, or all above it). The base model (index -1, 0 queries) is never picked: it is the
    "<checkpoint> (base)" entry of its own.
    """
    best = None
    for e in evaluations:
        if e.index >= 0 and e.reward_queries <= queries:
            if best is None or (e.reward_queries, e.index) > (best.reward_queries, best.index):
                best = e
    return best


def picked(groups, prompt_set, queries):
    """dict[label, list[Evaluation]]: each group's picks on ``prompt_set`` (runs without one left out;
    a group without any has an empty list)."""
    return {
        label: [e for run in runs if (e := pick(run.evaluations(prompt_set), queries)) is not None]
        for label, runs in groups.items()
    }


def budget_text(queries):
    """The budget in captions and titles."""
    return f"at ≤ {queries:,} reward queries: each run's last evaluation at or below it"


def queries_cell(values):
    """Reward queries of a Markdown cell: "25,344 q", or "25,088–25,344 q" when its runs differ."""
    low, high = min(values), max(values)
    return f"{low:,} q" if low == high else f"{low:,}–{high:,} q"


def queries_csv(values):
    """Reward queries of a CSV row: "25344", or "25088-25344" when its runs differ; "" without values."""
    if not values:
        return ""
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low}-{high}"


def _short(q):
    if q < 1000:
        return str(q)
    if q < 99_950:
        return f"{q / 1000:.1f}k"
    return f"{q / 1000:.0f}k" if q < 999_500 else f"{q / 1e6:.1f}M"


def queries_short(values):
    """Reward queries under a bar: "25.3k q", or "25.1k–25.3k q" when its runs differ."""
    low, high = min(values), max(values)
    return f"{_short(low)} q" if _short(low) == _short(high) else f"{_short(low)}–{_short(high)} q"


def what_it_has(run, prompt_set):
    """What a run has on a prompt set, for a note: "its train evaluations: 768 ... 30,720 queries"."""
    rounds = sorted(e.reward_queries for e in run.rounds(prompt_set))
    if not rounds:
        return (
            f"only a base-model {prompt_set} evaluation"
            if run.base(prompt_set) is not None
            else f"no {prompt_set} evaluations"
        )
    if len(rounds) == 1:
        return f"its {prompt_set} evaluation: {rounds[0]:,} queries"
    return f"its {prompt_set} evaluations: {rounds[0]:,} ... {rounds[-1]:,} queries"


def shortfall_notes(groups, prompt_set, queries, left_out):
    """Notes naming every run (and every group) with no trained-round evaluation on ``prompt_set`` at or
    below ``queries``; ``left_out`` names what they are left out of (e.g. "bars_train.png and Tables 1-2")."""
    notes = []
    for label, runs in groups.items():
        missing = [run for run in runs if pick(run.evaluations(prompt_set), queries) is None]
        for run in missing:
            notes.append(
                f"budget: run {run.path} ({label}) has no trained {prompt_set} evaluation at ≤ {queries:,} "
                f"reward queries ({what_it_has(run, prompt_set)}); left out of {left_out}"
            )
        if len(runs) > 1 and len(missing) == len(runs):  # a group of one run is named by its run's note
            notes.append(
                f"budget: group {label}: none of its {len(runs)} runs has a trained {prompt_set} evaluation "
                f"at ≤ {queries:,} reward queries; its entries in {left_out} are empty (-)"
            )
    return notes
