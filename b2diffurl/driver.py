"""Helpers for run_process.sh.

    python -m b2diffurl.driver prepare                    check the whole run, print its settings as shell assignments
    python -m b2diffurl.driver catchup EXP_DIR SAVE_INTERVAL [ROUND]
                                                          bring the bookkeeping in line with the finished rounds
                                                          (and print ROUND's summary line)
    python -m b2diffurl.driver launch ACCELERATE_ARGS...  accelerate launch, with a failed rank's exit status and no
                                                          launcher traceback

``prepare`` reads the driver's variables (the official run_process.sh's names) from the
environment; an unset or empty one takes its default from the config (CONFIG, one source of
truth). It checks every variable's type and range, every round's settings (the whole BPT
schedule), the paths, the device, and that the model and reward can be found, all before round 0,
and prints one line per problem naming the variable the user set. Relative paths the user set are
taken from the caller's folder (``B2DIFFURL_CALLER_DIR``); the config's own defaults from the
repository.

Light imports only (no torch unless the run asks for fp16 or a hub model): it starts in a
fraction of a second.
"""

import csv
import io
import os
import re
import shlex
import shutil
import sys

from b2diffurl import outcome, records
from b2diffurl.errors import UserError, first_line, show
from b2diffurl.schedule import interval_length

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = "config/stage_process.py"

# official driver variable -> config field (plus MixedPrecision, Algorithm, EvalInterval and LogWith, which the official driver lacks)
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
ROUND_FOLDER = re.compile(r"^round_(\d+)$")

COLUMNS = [
    "round",
    "run_name",
    "k",
    "split_time",
    "trajectories",
    "reward_queries",
    "reward_mean",
    "reward_std",
    "selected",
    "loss",
    "approx_kl",
    "clipfrac",
    "grad_norm",
    "optimizer_steps",
    "seconds",
    *outcome.EVAL_COLUMNS,
]


class RunProblems(UserError):
    """Every problem of a run's settings, one line each."""

    def __init__(self, lines):
        super().__init__(lines[0])
        self.problems = lines


# ---------------------------------------------------------------- config


def load_config(spec):
    """``path/to/config.py[:preset]`` -> ConfigDict, as absl's config_flags reads it."""
    import importlib.util

    path, _, preset = spec.partition(":")
    if REPO_ROOT not in sys.path:
        sys.path.insert(0, REPO_ROOT)  # the config imports the package
    module_spec = importlib.util.spec_from_file_location("_driver_config", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(preset) if preset else module.get_config()


def config_spec_problem(spec):
    """What is wrong with a ``path.py[:preset,...]`` config spec (one line), or None."""
    path, _, _ = spec.partition(":")
    if not os.path.isfile(path):
        return f"{path!r} does not exist: use config/stage_process.py[:preset]"
    if not path.endswith(".py"):
        return f"{path!r} is not a Python config file (a .py with get_config())"
    try:
        load_config(spec)
    except Exception as err:  # noqa: BLE001 - a user's config file can raise anything
        return f"does not load: {type(err).__name__}: {first_line(err)}"
    return None


def _absolute(path, base):
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(base, path))


def _input_path(path, caller):
    """A file the user named (CONFIG, PromptFile): from the caller's folder, or else the repository's
    own file of that name (``config/stage_process.py``, ``prompts/...``) when the caller has none."""
    mine = _absolute(path, caller)
    ours = _absolute(path, REPO_ROOT)
    return ours if not os.path.exists(mine) and os.path.exists(ours) else mine


def _parse(variable, raw, default):
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


# ---------------------------------------------------------------- prepare


def prepare(environ):
    """Check the whole run; returns {variable: value} for the shell, or raises RunProblems."""
    return checked_run(environ)[0]


def checked_run(environ):
    """(:func:`prepare`'s values, the run's effective config: presets and variables applied), or RunProblems."""
    from b2diffurl.checks import Checker, check_config, check_process, environment_problems, get

    caller = environ.get("B2DIFFURL_CALLER_DIR") or os.getcwd()
    if misses := near_misses(environ):
        raise RunProblems(misses)
    given = {k: environ[k] for k in (*DRIVER_VARIABLES, *OTHER_VARIABLES) if environ.get(k, "") != ""}
    spec = given.get("CONFIG", DEFAULT_CONFIG)
    path, colon, presets = spec.partition(":")
    spec = _input_path(path, caller) + colon + presets
    if problem := config_spec_problem(spec):
        raise RunProblems([f"CONFIG={given.get('CONFIG', DEFAULT_CONFIG)} {problem}"])
    config = load_config(spec)

    lines, shown, values, broken = [], {}, {}, set()
    for variable, field in DRIVER_VARIABLES.items():
        default = get(config, field)
        if variable in given:
            value, problem = _parse(variable, given[variable], default)
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

    num_processes, problem = _parse("NUM_PROCESSES", given.get("NUM_PROCESSES", "1"), 1)
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
            f"AllowChanges={allow} must be 0 or 1 (1: continue a run with settings that differ from its finished rounds')"
        )

    c = Checker(config)
    check_process(c)
    ks = None
    config.split_step = 1  # the driver sets split_step for every round: the config's own value is not used
    if not c.problems:
        process = config.process
        ks = [
            interval_length(r, process.stage_cnt, process.split_step_left, process.split_step_right)
            for r in range(process.stage_cnt)
        ]
        config.split_step = ks[-1]  # every round's k lies in split_step_left..split_step_right (checked)
    config.run_name = "round_000"
    checker, _ = check_config(config, num_processes)
    problems = [p for p in c.problems + checker.problems if getattr(p, "field", None) not in broken]
    if not problems and not lines:
        problems += environment_problems(config)
    lines += [_as_variable_line(p, shown) for p in problems]
    if lines:
        raise RunProblems(_unique(lines))
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


def machine_values(given, num_processes):
    """({NUM_MACHINES, MACHINE_RANK, MAIN_PROCESS_IP, MAIN_PROCESS_PORT}, problem lines) of a run on
    several machines (accelerate's flags of the same names; NUM_PROCESSES is the total over all of
    them, as accelerate's --num_processes). The defaults are one machine."""
    lines, out = [], {}
    for name, default, low in (("NUM_MACHINES", 1, 1), ("MACHINE_RANK", 0, 0), ("MAIN_PROCESS_PORT", 29500, 1)):
        raw = given.get(name, "").strip() or str(default)
        value, problem = _parse(name, raw, default)
        if problem is None and not low <= value <= (65535 - 15 if name == "MAIN_PROCESS_PORT" else value):
            problem = f"{name}={raw} must be " + (
                "a port, 1..65520 (the launches meet on it and the 15 ports above it, in turn)"
                if name == "MAIN_PROCESS_PORT"
                else f">= {low}"
            )
        lines += [problem] if problem else []
        out[name] = default if problem else value
    out["MAIN_PROCESS_IP"] = given.get("MAIN_PROCESS_IP", "").strip()
    machines, rank = out["NUM_MACHINES"], out["MACHINE_RANK"]
    if rank >= machines:
        lines.append(
            f"MACHINE_RANK={rank} must be below NUM_MACHINES={machines} (0 on the main machine, 1 .. {machines - 1} on the others)"
        )
    if machines > 1:
        if not out["MAIN_PROCESS_IP"]:
            lines.append(
                f"MAIN_PROCESS_IP is not set: with NUM_MACHINES={machines} give every machine the address of machine rank 0"
            )
        if num_processes % machines:
            lines.append(
                f"NUM_PROCESSES={num_processes} must be a multiple of NUM_MACHINES={machines}: it is the total "
                "over all machines, as accelerate's --num_processes (e.g. 2 machines x 4 GPUs: 8)"
            )
    return out, lines


EPHEMERAL_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"


def ephemeral_ports(path=EPHEMERAL_RANGE_FILE):
    """(first, last) port of the range the system hands to outgoing connections, or None where it
    cannot be read (not Linux)."""
    try:
        with open(path) as f:
            first, last = (int(v) for v in f.read().split()[:2])
    except (OSError, ValueError):
        return None
    return first, last


def port_warning(machines, ephemeral):
    """A line when a run on several machines meets on ports of the ephemeral range ``(first, last)``
    (None where it is unknown): an outgoing connection may take one of them mid-run and stop that
    launch's rendezvous. None otherwise."""
    if machines["NUM_MACHINES"] == 1 or ephemeral is None:
        return None
    base = machines["MAIN_PROCESS_PORT"]
    if base + 15 < ephemeral[0] or base > ephemeral[1]:
        return None
    return (
        f"MAIN_PROCESS_PORT={base}: the launches meet on ports {base}..{base + 15}, inside this machine's ephemeral "
        f"range {ephemeral[0]}..{ephemeral[1]}, from which outgoing connections take ports; one taken mid-run stops "
        f"that launch. Choose a base port of at most {ephemeral[0] - 16} (the default 29500 usually is)"
    )


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
        f"{values['SplitStepLeft']}..{values['SplitStepRight']}), {values['SplitTime']} branches, {values['BatchCnt']} "
        f"prompt batch(es) per round | Algorithm {train.algorithm}, LR {show(train.learning_rate)}, AccStep "
        f"{train.gradient_accumulation_steps}, TrainEpoch {train.num_epochs}, PosThreshold {show(ev.pos_threshold)}, "
        f"NegThreshold {show(ev.neg_threshold)}, Seed {config.seed} | evaluation {evaluation} | {values['NUM_PROCESSES']} "
        f"process(es){machines_text(values)}, MixedPrecision {config.mixed_precision}, config {values['CONFIG']}"
    )


def machines_text(values):
    machines = values.get("NUM_MACHINES", 1)
    return (
        ""
        if machines == 1
        else f" on {machines} machines (this one: rank {values['MACHINE_RANK']}, main {values['MAIN_PROCESS_IP']}:{values['MAIN_PROCESS_PORT']})"
    )


# ---------------------------------------------------------------- variables the user misspelt

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


def set_field(config, field, value):
    """Set the dotted ``field`` of ``config`` (an int given for a float field becomes a float)."""
    *parents, name = field.split(".")
    node = config
    for part in parents:
        node = node[part]
    if isinstance(node[name], float) and isinstance(value, int):
        value = float(value)
    node[name] = value


def _as_variable_line(problem, shown):
    """A problem as the user should read it: named by the driver variable that set the field."""
    from b2diffurl.errors import ConfigError

    if not isinstance(problem, ConfigError) or problem.field is None:
        return str(problem)
    text = problem.text
    for variable, field in DRIVER_VARIABLES.items():  # other fields the text mentions, by their variable too
        text = re.sub(rf"(?<![\w.]){re.escape(field)}(?=[=)])", variable, text)
    for variable, field in DRIVER_VARIABLES.items():
        if field == problem.field:
            return f"{variable}={shown.get(field, problem.value)} {text}"
    return f"{problem.field}={show(problem.value)} {text} (set in CONFIG)"


def shell_assignments(values):
    lines = []
    for name, value in values.items():
        if isinstance(value, list):
            lines.append(f"{name}=({' '.join(shlex.quote(str(v)) for v in value)})")
        else:
            lines.append(f"{name}={shlex.quote(str(value))}")
    return "\n".join(lines)


# ---------------------------------------------------------------- bookkeeping


def round_folders(exp_dir):
    """[(r, folder name)] of the run's round folders, in round order."""
    found = []
    for name in os.listdir(exp_dir) if os.path.isdir(exp_dir) else []:
        match = ROUND_FOLDER.match(name)
        if match and os.path.isdir(os.path.join(exp_dir, name)):
            found.append((int(match.group(1)), name))
    return sorted(found)


def round_finished(round_dir):
    return all(records.is_done(round_dir, stage) for stage in records.STAGES)


def round_row(exp_dir, run_name):
    """The progress row of a finished round, from its three markers."""
    round_dir = os.path.join(exp_dir, run_name)
    sample, select, train = (records.read_marker(round_dir, s) for s in records.STAGES)
    return {
        "run_name": run_name,
        "k": sample["split_step"],
        "split_time": sample["split_time"],
        "trajectories": select["trajectories"],
        "reward_mean": select["reward_mean"],
        "reward_std": select["reward_std"],
        **{f"reward_{name}_mean": mean for name, mean in select.get("reward_components", {}).items()},
        "selected": select["selected"],
        "loss": train["loss"],
        "approx_kl": train["approx_kl"],
        "clipfrac": train["clipfrac"],
        "grad_norm": train["grad_norm"],
        "optimizer_steps": train["optimizer_steps"],
        "seconds": round(sample["seconds"] + select["seconds"] + train["seconds"], 2),
    }


def progress_table(exp_dir):
    """CSV text of every finished round of the experiment, in round order (with cumulative reward queries
    and, where the round was evaluated, its evaluation's numbers: :data:`b2diffurl.outcome.EVAL_COLUMNS`)."""
    rows, queries = [], 0
    for r, name in round_folders(exp_dir):
        if round_finished(os.path.join(exp_dir, name)):
            row = round_row(exp_dir, name)
            queries += row["trajectories"]
            rows.append({"round": r, "reward_queries": queries, **row, **outcome.eval_columns(exp_dir, name)})
    # a combined reward's components (reward_<name>_mean) follow reward_std
    components = list(
        dict.fromkeys(
            k for row in rows for k in row if k.startswith("reward_") and k.endswith("_mean") and k not in COLUMNS
        )
    )
    at = COLUMNS.index("reward_std") + 1
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS[:at] + components + COLUMNS[at:], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


INTERVAL_LATENTS = ("samples", "selected.safetensors")  # what a trained round no longer needs (process.save_interval)


def keeps_latents(r, save_interval):
    """Whether round r keeps its interval latents once trained: every save_interval-th round (0: none)."""
    return save_interval > 0 and r % save_interval == 0


def catch_up(exp_dir, save_interval):
    """Make the run folder what an uninterrupted run would have left, whatever stop came before:
    no temporary files or folders of finished stages, the interval latents (``samples/`` and
    ``selected.safetensors``) only in every ``save_interval``-th finished round (none for 0), and
    ``progress.csv`` rebuilt from the finished rounds' markers."""
    if not os.path.isdir(exp_dir):
        return
    records.purge_temporary_files(exp_dir, recursive=False)
    for r, name in round_folders(exp_dir):
        round_dir = os.path.join(exp_dir, name)
        records.purge_temporary_files(round_dir, recursive=False)
        for stage in records.STAGES:
            if records.is_done(round_dir, stage) and os.path.isdir(records.stage_tmp_dir(round_dir, stage)):
                shutil.rmtree(records.stage_tmp_dir(round_dir, stage))
        if not keeps_latents(r, save_interval) and round_finished(round_dir):
            for name in INTERVAL_LATENTS:  # trained: nothing reads the interval latents any more
                path = os.path.join(round_dir, name)
                if os.path.isdir(path):
                    shutil.rmtree(path)
                elif os.path.isfile(path):
                    os.remove(path)
    path = os.path.join(exp_dir, "progress.csv")
    table = progress_table(exp_dir)
    current = open(path).read() if os.path.isfile(path) else None
    if current != table:
        records.write_bytes(path, table.encode())
        records.fault_point("progress.csv")


def summary_line(exp_dir, run_name):
    row = round_row(exp_dir, run_name)
    return (
        f"{run_name} | k {row['k']} | reward {row['reward_mean']:.4f} +- {row['reward_std']:.4f} | "
        f"selected {row['selected']}/{row['trajectories']} | loss {row['loss']:.4f} | {row['seconds']:.1f} s"
    )


# ---------------------------------------------------------------- launch

EXIT_NOT_MET = 4


def launch(argv):
    """``accelerate launch ARGV``; a failed rank ends it with that rank's exit status and no launcher
    traceback (the rank printed its own one-line error); Ctrl-C ends it with 130."""
    import logging

    import torch.distributed.run  # noqa: F401 - creates the elastic loggers silenced below
    from accelerate.commands.launch import launch_command, launch_command_parser
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    for name in list(logging.root.manager.loggerDict):
        if name.startswith("torch.distributed"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    from torch.distributed import DistNetworkError

    args = launch_command_parser().parse_args(argv)
    try:
        launch_command(args)
    except DistNetworkError as err:  # several machines: the main one is not there (yet) or cannot be reached
        from b2diffurl.errors import first_line

        print(
            f"error: the machines did not meet ({first_line(err)}): start run_process.sh on every machine with the same "
            "NUM_MACHINES, MAIN_PROCESS_IP and MAIN_PROCESS_PORT (the main machine's address and a port it can open), "
            "each with its MACHINE_RANK; if one of them stopped, see its own output",
            file=sys.stderr,
        )
        return EXIT_NOT_MET
    except ChildFailedError as err:
        rank, failure = err.get_first_failure()
        if failure.exitcode < 0 and args.num_machines and args.num_machines > 1:
            # a process of this machine died of a signal (the C++ runtime can abort when a peer
            # machine's connection breaks under it): it printed no line of its own
            import signal

            from b2diffurl.cli import LOST_PEER

            try:
                name = signal.Signals(-failure.exitcode).name
            except ValueError:  # not a signal number this platform names
                name = f"exit status {failure.exitcode}"
            print(f"error: {LOST_PEER} (rank {rank} ended with {name})", file=sys.stderr)
            return 1
        return failure.exitcode if failure.exitcode > 0 else 1
    except (KeyboardInterrupt, SignalException):
        return 130
    return 0


def main(argv):
    command, args = (argv[0], argv[1:]) if argv else ("", [])
    try:
        if command == "prepare":
            values = prepare(os.environ)
            if warning := port_warning(values, ephemeral_ports()):
                print(f"warning: {warning}", file=sys.stderr)
            print(shell_assignments(values))
        elif command == "start":
            from b2diffurl.settings import start

            start(args[0], int(args[1]), os.environ)
        elif command == "report":
            from b2diffurl.outcome import report
            from b2diffurl.settings import finish

            catch_up(args[0], int(args[1]))
            finish(args[0], os.environ)
            print(report(args[0], args[2] if len(args) > 2 else ""))
        elif command == "catchup":
            exp_dir, save_interval = args[0], int(args[1])
            catch_up(exp_dir, save_interval)
            if len(args) > 2:
                print(summary_line(exp_dir, args[2]))
        elif command == "launch":
            return launch(args)
        else:
            print(f"error: unknown command {command!r}: use prepare, start, catchup, report or launch", file=sys.stderr)
            return 2
    except UserError as err:
        for line in getattr(err, "problems", [str(err)]):
            print(f"error: {line}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
