"""Paper-style figures and tables from finished runs, compared at equal reward queries:
``python -m b2diffurl.figures RUN_DIR ... --out DIR [--queries N]``.

Each positional argument is a run folder (``<save_path>/<exp_name>``), written ``RUN_DIR`` or
``LABEL=RUN_DIR``. Runs with the same label are seeds of one experiment (a *group*). Without a
label, the label is the folder's name less a trailing seed suffix (``_seed2``, ``-s3``, ...), so
``b2_t1_seed1`` and ``b2_t1_seed2`` form the group ``b2_t1``.

What is read from a run folder (other files are not read):

- ``progress.csv``: the training reward (``reward_mean``, ``reward_std``, ``trajectories``) of each
  finished round against the cumulative ``reward_queries``.
- ``base/eval/<set>.json`` (the base model, round_index -1, 0 reward queries) and
  ``round_NNN/eval/<set>.json`` (round NNN's LoRA) for both prompt sets, written by
  ``python -m b2diffurl.evaluate``: ``train`` = the template's training prompt list, ``test`` = its
  held-out list. Used keys: ``reward_queries`` (training images scored by the reward up to and
  including the round, all ranks; from progress.csv's row of the round when absent),
  ``clipscore_mean`` / ``clipscore_sem``, ``inception_score`` (pooled over all images) /
  ``inception_score_std`` / ``is_splits``, ``inception_score_per_prompt`` (IS within each prompt's
  images, averaged over prompts) / ``inception_score_per_prompt_sem`` (absent in format_version 1
  files: then "-"), ``template`` (column ``Temp. N`` for ``templateN``; the prompt file's name
  when there is none), ``method.label`` / ``method.algorithm``, ``settings``, and for the toy world
  ``alignment_mean`` / ``alignment_sem`` / ``background_entropy``.

The budget rule (``--queries N``, default 25600; :func:`b2diffurl.figures.budget.pick`): every bar,
table cell and table CSV row stands for, per run and prompt set, the trained-round evaluation
(round_index >= 0) with the largest ``reward_queries`` <= N (on equal queries the later round),
so methods that score different numbers of images per round are compared at equal reward queries.
The base model is the "<checkpoint> (base)" bar and row, e.g. "SD v1.4 (base)" (0 queries). A run
without a trained evaluation at or below N on a set (none at all, or all above N) is named in a
``note:`` line with what it has and what it is left out of; a group whose runs all lack one is named
too, its bars and cells empty ("-").
Each table cell shows the reward queries it stands for, ``0.3500 ± 0.0100 (25,344 q)`` or
``(25,088–25,344 q)`` when its runs differ; each bar is labelled with value and queries
(``0.350`` / ``25.3k q``); curves show every evaluated point with a dashed line at N.

How numbers are averaged (every figure, table and CSV):

- A group's value is the mean over its seeds (runs); its uncertainty is the standard error over
  seeds, SE = sample standard deviation (n - 1 in the denominator) / sqrt(n_seeds).
- A group of one seed has no spread over seeds; it shows the run's own standard error instead:
  ``clipscore_sem`` for CLIPScore, ``inception_score_per_prompt_sem`` for the per-prompt IS,
  ``inception_score_std / sqrt(is_splits)`` for the pooled IS when ``is_splits > 1`` (none
  otherwise), ``alignment_sem`` for the toy alignment (none for background entropy), and
  ``reward_std / sqrt(trajectories)`` of the round for the training reward. The CSVs say which in
  ``se_source`` (``seeds``, ``eval``, ``round``, or empty when there is no SE); legends and titles
  say "SE over seeds" only where n >= 2.
- Curves: a point (a reward-queries value) is averaged only when every seed of the group has it;
  points missing from some seed are left out and counted in a note.
- The base entries average the distinct base evaluations of the runs given: runs that evaluated
  the base model with the same ``settings`` (same seeds, so the same numbers) count once.
- Tables 1 and 3 have one column per template; Table 2 pools every run whose picked evaluation has
  ``method.label`` vanilla ("Vanilla") or B2-DiffuRL ("Ours+Vanilla") and a ``method.algorithm``
  (rows PPO/DDPO, PG, DPOK, DPO; the template in the row name when they span several templates).

Outputs in ``--out`` (created if missing; one that lacks data is skipped with a note):

- ``curve_train.png`` / ``.csv``: Fig. 5, CLIPScore on the training prompts vs reward queries.
- ``curve_test.png`` / ``.csv``: the same on the held-out prompts (extra; not a figure of the paper).
- ``curve_train_reward.png`` / ``.csv``: the training reward from progress.csv.
- toy world only: ``curve_<set>_alignment.png`` / ``.csv``, ``curve_<set>_background_entropy.png`` / ``.csv``
  for each set whose evaluations have them.
- ``fig7a_<set>.png``, ``curve_<set>_bertscore.csv``: Fig. 7a's two panels, CLIPScore and BERTScore
  vs reward queries side by side, for each set whose evaluations carry BERTScore (``evaluate.metrics``);
  in the toy world its stand-in, the toy captioning score (``curve_<set>_toycaption.csv``).
- ``bars_train.png``: Fig. 7/8, training prompts at the budget: CLIPScore, per-prompt IS, pooled IS.
- ``tables.md`` (also printed at the end): Table 1 (diversity: per-prompt IS, training prompts),
  "Table 1, pooled IS", Table 2 (algorithms, per-prompt IS, training prompts), "Table 2, pooled IS",
  Table 3 (generalization: CLIPScore on the held-out prompts), toy sections (alignment and
  background entropy, one per set); every caption names its prompt set and the budget. The
  per-prompt IS leads Tables 1-2: the paper's values (SD 1.32 / 1.41 / 1.36) are close to 1, which
  fits diversity within a prompt; an IS pooled over many subjects is far larger.
- ``table1_diversity.csv``, ``table1_diversity_pooled.csv``, ``table2_algorithms.csv``,
  ``table2_algorithms_pooled.csv``, ``table3_generalization.csv``, ``table_toy_<metric>_<set>.csv``:
  one line per cell: ``row, column, mean, se, n, se_source, reward_queries`` (the value, "min-max"
  when the cell's runs differ, "0" for SD, empty for an empty cell).
- ``summary.csv``: one line per (run, prompt set, evaluation), base included: ``label, run`` (the run
  folder relative to ``--out``, so the file stays right when the tree moves), ``prompt_set, round,
  round_index, reward_queries, at_budget`` (1 for the evaluation the budget rule picked for that run
  and set, else 0), ``clipscore_mean, clipscore_sem, inception_score_per_prompt,
  inception_score_per_prompt_sem, inception_score, template, algorithm, method, model, learning_rate,
  seed``, then the optional metrics, empty when an evaluation has none: ``bertscore_mean, bertscore_sem,
  toycaption_mean, toycaption_sem`` (evaluate.metrics) and ``alignment_mean, alignment_sem,
  background_entropy`` (the toy world).

Printed: ``note: ...`` lines, ``wrote PATH`` per output, then the Markdown tables. A bad argument or
file (``--queries`` not a whole number >= 0 included) ends in one ``error: ...`` line on stderr and
exit status 2, with nothing written; so does a set of runs with nothing at all to draw.
Importing this package loads neither matplotlib, numpy nor torch (matplotlib only while drawing).
"""

from b2diffurl.figures.bars import budget_bars, plot_bars
from b2diffurl.figures.budget import DEFAULT_QUERIES, pick
from b2diffurl.figures.cli import main, plan_outputs
from b2diffurl.figures.curves import plot_curves
from b2diffurl.figures.runs import Evaluation, FiguresError, Run, base_label, load_runs, split_spec
from b2diffurl.figures.stats import Stat, average_curves, mean_se
from b2diffurl.figures.tables import algorithm_cells, format_cell, format_stat, template_cells

__all__ = [
    "DEFAULT_QUERIES",
    "Evaluation",
    "FiguresError",
    "Run",
    "Stat",
    "algorithm_cells",
    "average_curves",
    "base_label",
    "budget_bars",
    "format_cell",
    "format_stat",
    "load_runs",
    "main",
    "mean_se",
    "pick",
    "plan_outputs",
    "plot_bars",
    "plot_curves",
    "split_spec",
    "template_cells",
]
