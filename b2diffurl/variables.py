"""The driver's variables: the official run_process.sh's names, the config field each sets, and the
near misses (``Lr``, ``StageCt``) that stop a run before anything is written.

Pure and torch-free: the driver, the run's settings record and the checks' messages all name a
field by its variable through this module.
"""

import re

from b2diffurl.errors import ConfigError, show

# official driver variable -> config field (plus MixedPrecision, Algorithm, EvalInterval and LogWith, which the
# official driver lacks)
DRIVER_VARIABLES = {
    "SaveInterval": "process.save_interval",
    "OneProcess": "process.one_process",
    "SavePath": "save_path",
    "PromptFile": "prompt_file",
    "RandomPrompt": "prompt_random_choose",
    "ExpName": "exp_name",
    "Seed": "seed",
    "Beta1": "train.beta1",
    "Beta2": "train.beta2",
    "BatchCnt": "sample.num_batches_per_epoch",
    "StageCnt": "process.stage_cnt",
    "SplitStepLeft": "process.split_step_left",
    "SplitStepRight": "process.split_step_right",
    "TrainEpoch": "train.num_epochs",
    "AccStep": "train.gradient_accumulation_steps",
    "LR": "train.learning_rate",
    "NumStep": "sample.num_steps",
    "History_Cnt": "eval.history_cnt",
    "PosThreshold": "eval.pos_threshold",
    "NegThreshold": "eval.neg_threshold",
    "SplitTime": "split_time",
    "MixedPrecision": "mixed_precision",
    "Algorithm": "train.algorithm",
    "EvalInterval": "evaluate.interval",
    "EvalImages": "evaluate.num_images",
    "EvalSets": "evaluate.prompt_sets",
    "LogWith": "log_with",
}


PATH_VARIABLES = ("SavePath", "PromptFile")


INTEGER = re.compile(r"^[+-]?\d+$")


# set by users besides DRIVER_VARIABLES; ACCELERATE_ARGS and PYTHON are read by run_process.sh itself
OTHER_VARIABLES = (
    "CONFIG",
    "NUM_PROCESSES",
    "FreshOptimizer",
    "AllowChanges",
    "NUM_MACHINES",
    "MACHINE_RANK",
    "MAIN_PROCESS_IP",
    "MAIN_PROCESS_PORT",
)


KNOWN_VARIABLES = (*DRIVER_VARIABLES, *OTHER_VARIABLES, "ACCELERATE_ARGS", "PYTHON")


def parse_value(variable, raw, default):
    """The typed value of a variable the user set (``raw``), like its config default; or a problem line."""
    if isinstance(default, str):
        return raw, None
    if isinstance(default, int):
        if not INTEGER.match(raw.strip()):
            return None, f"{variable}={raw} must be an integer"
        return int(raw), None
    try:
        return float(raw), None
    except ValueError:
        return None, f"{variable}={raw} must be a number"


def one_edit_apart(a, b):
    """True when ``a`` becomes ``b`` by one insertion, deletion, substitution or swap of neighbours."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diffs = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
        return len(diffs) == 1 or (
            len(diffs) == 2 and diffs[1] == diffs[0] + 1 and a[diffs[0]] == b[diffs[1]] and a[diffs[1]] == b[diffs[0]]
        )
    short, long_ = sorted((a, b), key=len)
    return any(long_[:i] + long_[i + 1 :] == short for i in range(len(long_)))


def near_misses(environ):
    """One "did you mean" line per environment variable that looks like a driver variable but is not
    one: another case (``Lr``, ``SAVEPATH``) or, for names of 5+ letters, one letter off (``StageCt``)."""
    lines = []
    for name in sorted(environ):
        if name in KNOWN_VARIABLES:
            continue
        for known in KNOWN_VARIABLES:
            if name.lower() == known.lower() or (len(known) >= 5 and one_edit_apart(name.lower(), known.lower())):
                lines.append(
                    f"{name}={environ[name]} is not a variable of run_process.sh: did you mean {known}? "
                    "(names are case-sensitive; unset it)"
                )
                break
    return lines


def as_variable_line(problem, shown):
    """A problem as the user should read it: named by the driver variable that set the field."""
    if not isinstance(problem, ConfigError) or problem.field is None:
        return str(problem)
    text = problem.text
    for variable, field in DRIVER_VARIABLES.items():  # other fields the text mentions, by their variable too
        text = re.sub(rf"(?<![\w.]){re.escape(field)}(?=[=)])", variable, text)
    for variable, field in DRIVER_VARIABLES.items():
        if field == problem.field:
            return f"{variable}={shown.get(field, problem.value)} {text}"
    return f"{problem.field}={show(problem.value)} {text} (set in CONFIG)"


def field_name(field):
    """A config field as the user sets it: its driver variable where it has one."""
    return next((v for v, f in DRIVER_VARIABLES.items() if f == field), field)
