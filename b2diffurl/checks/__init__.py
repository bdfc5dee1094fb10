"""Config validation, before any model is loaded and before anything is written.

Every problem is a :class:`ConfigError` naming the field, the value and the fix, one line each. A
:class:`Checker` collects all of them instead of stopping at the first; ``run_process.sh`` checks
a whole run this way (every round's settings) before round 0, and names the driver variable the
user set in place of the config field (``BatchCnt=0``, not ``sample.num_batches_per_epoch=0``).

- :mod:`.checker`: the Checker and its rules of one value (integer, number, flag, one of).
- :mod:`.fields`, :mod:`.training`: the fields' rules; :mod:`.prompts`: the prompt list;
  :mod:`.model`: the policy's checkpoint; :mod:`.rewards`: the reward's settings; :mod:`.trackers`:
  the experiment log; :mod:`.evaluation`: the evaluation's settings and prompt sets.
- :mod:`.config`: all of them together (:func:`check_config`).
- :mod:`.environment`, :mod:`.hub`: what the machine must provide (a writable folder, the device,
  the models on disk or in the Hugging Face cache).
- :mod:`.preconditions`: what a stage needs before it starts (:func:`check_stage`).

The lists a field chooses from live in :mod:`b2diffurl.choices`, the prompt sets of an evaluation
in :mod:`b2diffurl.prompt_sets`; both are re-exported here under their old names.

Light imports only (no torch, unless a check needs the device or open_clip's model list): the
driver runs these checks in a fraction of a second.
"""

from b2diffurl.checks.checker import Checker
from b2diffurl.checks.config import check_config
from b2diffurl.checks.environment import check_device, environment_problems
from b2diffurl.checks.evaluation import NOT_CHECKED, check_evaluation
from b2diffurl.checks.fields import PLAIN_NAME, check_process
from b2diffurl.checks.hub import hub_problem, model_problems
from b2diffurl.checks.model import HUB_ID, check_backbone, check_model, check_model_location
from b2diffurl.checks.preconditions import check_history, check_resume, check_stage
from b2diffurl.checks.prompts import check_prompts
from b2diffurl.checks.rewards import CHECKPOINT_SUFFIXES, check_bertscore, check_reward, reward_components
from b2diffurl.checks.trackers import check_logging
from b2diffurl.checks.training import check_training
from b2diffurl.choices import (
    ALGORITHMS,
    ALIGNMENT_METRICS,
    ATTENTIONS,
    DPO_REFERENCES,
    LATENT_DTYPES,
    MIXED_PRECISION,
    PARTIAL_BATCHES,
    PARTIAL_STEPS,
    PROMPT_SETS,
    REWARD_NAMES,
    REWARD_PRECISIONS,
    eval_metrics,
)
from b2diffurl.errors import ConfigError, RecordError
from b2diffurl.prompt_sets import eval_prompt_file, eval_prompt_sets, held_out_prompt_file

__all__ = [
    "ALGORITHMS",
    "ALIGNMENT_METRICS",
    "ATTENTIONS",
    "CHECKPOINT_SUFFIXES",
    "DPO_REFERENCES",
    "HUB_ID",
    "LATENT_DTYPES",
    "MIXED_PRECISION",
    "NOT_CHECKED",
    "PARTIAL_BATCHES",
    "PARTIAL_STEPS",
    "PLAIN_NAME",
    "PROMPT_SETS",
    "REWARD_NAMES",
    "REWARD_PRECISIONS",
    "Checker",
    "ConfigError",
    "RecordError",
    "check_backbone",
    "check_bertscore",
    "check_config",
    "check_device",
    "check_evaluation",
    "check_history",
    "check_logging",
    "check_model",
    "check_model_location",
    "check_process",
    "check_prompts",
    "check_resume",
    "check_reward",
    "check_stage",
    "check_training",
    "environment_problems",
    "eval_metrics",
    "eval_prompt_file",
    "eval_prompt_sets",
    "held_out_prompt_file",
    "hub_problem",
    "model_problems",
    "reward_components",
]
