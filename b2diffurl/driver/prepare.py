"""Check a whole run before round 0 and hand its checked settings on: ``python -m b2diffurl.driver prepare``.

It reads the driver's variables (the official run_process.sh's names, :mod:`b2diffurl.variables`) from
the environment; an unset or empty one takes its default from the config (CONFIG, one source of
truth). It checks every variable's type and range, every round's settings (the whole BPT schedule),
the paths, the device, and that the model and reward can be found, all before round 0, and reports
one line per problem naming the variable the user set. Relative paths the user set are taken from
the caller's folder (``B2DIFFURL_CALLER_DIR``); the config's own defaults from the repository.
Light imports only (no torch unless the run asks for fp16 or a hub model).
"""

import os
import shlex

from b2diffurl.checks import Checker, check_config, check_process, environment_problems
from b2diffurl.configs import DEFAULT_CONFIG, REPO_ROOT, config_spec_problem, get, load_config, set_field
from b2diffurl.driver.machines import machine_values, machines_text
from b2diffurl.errors import Problems, show
from b2diffurl.layout import round_name
from b2diffurl.schedule import interval_length
from b2diffurl.variables import (
    DRIVER_VARIABLES,
    INTEGER,
    OTHER_VARIABLES,
    PATH_VARIABLES,
    as_variable_line,
    near_misses,
    parse_value,
)


def _absolute(path, base):
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(base, path))


def _input_path(path, caller):
    """A file the user named (CONFIG, PromptFile): from the caller's folder, or else the repository's
    own file of that name (``config/stage_process.py``, ``prompts/...``) when the caller has none."""
    mine = _absolute(path, caller)
    ours = _absolute(path, REPO_ROOT)
    return ours if not os.path.exists(mine) and os.path.exists(ours) else mine


def prepare(environ):
    """Check the whole run; returns {variable: value} for the shell, or raises Problems."""
    return checked_run(environ)[0]


def checked_run(environ):
    """(:func:`prepare`'s values, the run's effective config: presets and variables applied), or Problems."""

    caller = environ.get("B2DIFFURL_CALLER_DIR") or os.getcwd()
    if misses := near_misses(environ):
        raise Problems(misses)
    given = {k: environ[k] for k in (*DRIVER_VARIABLES, *OTHER_VARIABLES) if environ.get(k, "") != ""}
    spec = given.get("CONFIG", DEFAULT_CONFIG)
    path, colon, presets = spec.partition(":")
    spec = _input_path(path, caller) + colon + presets
    if problem := config_spec_problem(spec):
        raise Problems([f"CONFIG={given.get('CONFIG', DEFAULT_CONFIG)} {problem}"])
    config = load_config(spec)

    lines, shown, values, broken = [], {}, {}, set()
    for variable, field in DRIVER_VARIABLES.items():
        default = get(config, field)
        if variable in given:
            value, problem = parse_value(variable, given[variable], default)
            if problem:  # reported; the checks below go on with the default, their lines on it left out
                lines.append(problem)
                broken.add(field)
                value = _absolute(default, REPO_ROOT) if variable in PATH_VARIABLES and default else default
                set_field(config, field, value)
                values[variable] = value
                continue
            if variable == "PromptFile":
                value = _input_path(value, caller)
            elif variable in PATH_VARIABLES:
                value = _absolute(value, caller)
            shown[field] = given[variable]
        else:
            value = _absolute(default, REPO_ROOT) if variable in PATH_VARIABLES and default else default
        set_field(config, field, value)
        values[variable] = value

    num_processes, problem = parse_value("NUM_PROCESSES", given.get("NUM_PROCESSES", "1"), 1)
    if problem is None and num_processes < 1:
        problem = f"NUM_PROCESSES={given['NUM_PROCESSES']} must be >= 1"
    if problem:
        lines.append(problem)
        num_processes = 1
    machines, machine_lines = machine_values(given, num_processes)
    lines += machine_lines
    fresh = given.get("FreshOptimizer", "")
    if fresh and not INTEGER.match(fresh):
        lines.append(f"FreshOptimizer={fresh} must be a round number (the round whose AdamW starts from zero)")
    allow = given.get("AllowChanges", "0")
    if allow not in ("0", "1"):
        lines.append(
            f"AllowChanges={allow} must be 0 or 1 (1: continue a run with settings that differ from its finished "
            "rounds')"
        )

    c = Checker(config)
    check_process(c)
    ks = None
    if not c.problems:
        process = config.process
        ks = [
            interval_length(r, process.stage_cnt, process.split_step_left, process.split_step_right)
            for r in range(process.stage_cnt)
        ]
    # the driver sets split_step for every round (the config's own value is not used): the checks see the
    # last round's k, which lies in split_step_left..split_step_right like every round's; with a broken
    # schedule (reported above) 1, which no check refuses
    config.split_step = ks[-1] if ks else 1
    config.run_name = round_name(0)
    checker, _ = check_config(config, num_processes)
    problems = [p for p in c.problems + checker.problems if getattr(p, "field", None) not in broken]
    if not problems and not lines:
        problems += environment_problems(config)
    lines += [as_variable_line(p, shown) for p in problems]
    if lines:
        raise Problems(_unique(lines))
    values.update(machines)
    values.update(
        CONFIG=spec,
        NUM_PROCESSES=num_processes,
        FreshOptimizer=fresh,
        AllowChanges=allow,
        ExpDir=os.path.join(values["SavePath"], values["ExpName"]),
    )
    values["Ks"] = ks
    values["Header"] = header_line(config, values)
    return values, config


def _unique(lines):
    return list(dict.fromkeys(lines))


def header_line(config, values):
    """The run's first line: where, how long, and the hyperparameters that decide what it learns."""
    ks, train, ev = values["Ks"], config.train, config.eval
    evaluation = (
        f"every {values['EvalInterval']} round(s) on {config.evaluate.prompt_sets}"
        if values["EvalInterval"] > 0
        else "off"
    )
    return (
        f"experiment {values['ExpDir']}: {values['StageCnt']} rounds, k {ks[0]}..{ks[-1]} (BPT schedule "
        f"{values['SplitStepLeft']}..{values['SplitStepRight']}), {values['SplitTime']} branches, "
        f"{values['BatchCnt']} prompt batch(es) per round | Algorithm {train.algorithm}, LR "
        f"{show(train.learning_rate)}, AccStep {train.gradient_accumulation_steps}, TrainEpoch {train.num_epochs}, "
        f"PosThreshold {show(ev.pos_threshold)}, NegThreshold {show(ev.neg_threshold)}, Seed {config.seed} | "
        f"evaluation {evaluation} | {values['NUM_PROCESSES']} process(es){machines_text(values)}, MixedPrecision "
        f"{config.mixed_precision}, config {values['CONFIG']}"
    )


def shell_assignments(values):
    lines = []
    for name, value in values.items():
        if isinstance(value, list):
            lines.append(f"{name}=({' '.join(shlex.quote(str(v)) for v in value)})")
        else:
            lines.append(f"{name}={shlex.quote(str(value))}")
    return "\n".join(lines)
