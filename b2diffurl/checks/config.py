"""Every field a stage reads, checked together: one line per problem, all of them at once."""

from b2diffurl.checks.checker import Checker, is_int
from b2diffurl.checks.evaluation import check_evaluation
from b2diffurl.checks.fields import (
    check_batches,
    check_names,
    check_policy,
    check_runtime,
    check_sampling,
    check_selection,
)
from b2diffurl.checks.model import check_model
from b2diffurl.checks.prompts import check_prompts
from b2diffurl.checks.rewards import check_reward
from b2diffurl.checks.trackers import check_logging
from b2diffurl.checks.training import check_training


def check_config(config, num_processes=1, eval_prompts=None):
    """Every field a stage reads (all stages: a bad training setting stops sampling before it starts).

    Returns the Checker (``.problems``; ``.eval_prompts``: {set: prompts} of the evaluation when its prompt
    files were checked) and the training prompt list (None if it is broken). The evaluation's prompt files
    are checked when ``eval_prompts`` is True, or (None) when ``evaluate.interval`` > 0.
    """
    c = Checker(config)
    check_names(c)
    check_sampling(c)
    check_runtime(c)
    check_batches(c, num_processes)
    check_policy(c)
    check_training(c)
    check_selection(c)
    check_logging(c)
    prompts = check_prompts(config, c)
    check_model(c)
    check_reward(c, prompts)
    if eval_prompts is None:
        eval_prompts = config.evaluate.interval > 0 if is_int(config.evaluate.interval) else False
    c.eval_prompts = check_evaluation(c, eval_prompts, train_prompts=prompts)
    return c, prompts
