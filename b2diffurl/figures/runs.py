"""Reading run folders: their progress.csv and evaluation JSONs, labels and groups of seeds."""

import csv
import json
import math
import os
import re
from dataclasses import dataclass, field

from b2diffurl import layout
from b2diffurl.layout import BASE

PROGRESS = layout.PROGRESS_NAME
PROMPT_SETS = ("train", "test")  # eval/<set>.json: the template's training list, its held-out list
SEED_SUFFIX = re.compile(r"[_-](?:seed|s)\d+$", re.IGNORECASE)
TEMPLATE = re.compile(r"^template(\d+)$", re.IGNORECASE)


class FiguresError(Exception):
    """A problem with the arguments or a run's files; printed as one line, exit status 2."""

    def __str__(self):
        return " ".join(super().__str__().split())


@dataclass
class Evaluation:
    """One ``eval/<prompt_set>.json`` of a run: the base model (index -1) or a round's LoRA."""

    round: str  # "base" or "round_003"
    index: int  # -1 for the base model
    prompt_set: str  # "train" or "test"
    reward_queries: int  # training images scored by the reward up to and including the round (0: base)
    clipscore: float
    clipscore_sem: float | None
    inception: float | None  # pooled over all images
    inception_se: float | None  # inception_score_std / sqrt(is_splits) when is_splits > 1
    inception_pp: float | None  # inception_score_per_prompt (None in format_version 1 files)
    inception_pp_sem: float | None  # inception_score_per_prompt_sem
    template: str  # table column: "Temp. 1", or the prompt file's name
    algorithm: str  # method.algorithm, lower case ("" when absent)
    method: str  # method.label ("" when absent)
    same_as: str = ""  # what makes two evaluations the same: the settings they record (their path when none)
    alignment: float | None = None  # the toy world's metrics (evaluate.alignment = "toyworld")
    alignment_sem: float | None = None
    background_entropy: float | None = None
    bertscore: float | None = None  # bertscore_mean / _sem (evaluate.metrics = "bertscore")
    bertscore_sem: float | None = None
    toycaption: float | None = None  # toycaption_mean / _sem: the toy world's stand-in for BERTScore
    toycaption_sem: float | None = None
    model: str = ""  # the checkpoint the run started from (settings.model), in words: model_name
    learning_rate: float | None = None  # run.learning_rate: the training settings that matter to a comparison
    seed: int | None = None  # run.seed (the run's Seed; the evaluation's own seeds are fixed)


@dataclass
class Run:
    label: str
    path: str
    progress: list = field(default_factory=list)  # list[dict]: round, reward_queries, reward_mean, reward_se
    evals: dict = field(default_factory=dict)  # prompt set -> list[Evaluation], base first then rounds in order

    def evaluations(self, prompt_set):
        return self.evals.get(prompt_set, [])

    def base(self, prompt_set):
        return next((e for e in self.evaluations(prompt_set) if e.index < 0), None)

    def rounds(self, prompt_set):
        return [e for e in self.evaluations(prompt_set) if e.index >= 0]


def split_spec(spec):
    """``LABEL=RUN_DIR`` or ``RUN_DIR`` -> (label, path); the label of a bare folder drops a seed suffix."""
    label, path = None, spec
    if "=" in spec and not os.path.isdir(spec):
        label, path = spec.split("=", 1)
        if not label.strip():
            raise FiguresError(f"{spec!r}: empty label before '=' (write LABEL=RUN_DIR or RUN_DIR)")
        label = label.strip()
    if label is None:
        name = os.path.basename(os.path.normpath(path))
        label = SEED_SUFFIX.sub("", name) or name
    return label, path


def eval_files(run_dir, prompt_set):
    """``base/eval/<prompt_set>.json`` and ``round_NNN/eval/<prompt_set>.json`` of a run folder:
    list[tuple[str, int, str]] of (round name, index, path), base (-1) first, then by round."""
    named = [(BASE, -1)] + [(name, r) for r, name in layout.round_folders(run_dir)]
    return [
        (name, r, layout.eval_json(run_dir, name, prompt_set))
        for name, r in named
        if os.path.isfile(layout.eval_json(run_dir, name, prompt_set))
    ]


def number(value, where, name, required=False):
    """A finite float from a JSON/CSV value; None when absent, empty or non-finite (error if required)."""
    if value is None or value == "":
        if required:
            raise FiguresError(f"{where}: has no {name}")
        return None
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise FiguresError(f"{where}: {name}={value!r} is not a number") from None
    if not math.isfinite(result):
        if required:
            raise FiguresError(f"{where}: {name}={value!r} is not finite")
        return None
    return result


def read_progress(path):
    """progress.csv -> list[dict] with int round, int reward_queries, float reward_mean, reward_se (float|None)."""
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = {"round", "reward_queries", "reward_mean"} - set(reader.fieldnames or [])
            if missing:
                raise FiguresError(f"{path}: no column {', '.join(sorted(missing))} (is it a run's progress.csv?)")
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise FiguresError(f"{path}: cannot be read ({err})") from None
    out = []
    for line, row in enumerate(rows, start=2):
        where = f"{path} line {line}"
        std = number(row.get("reward_std"), where, "reward_std")
        trajectories = number(row.get("trajectories"), where, "trajectories")
        out.append(
            {
                "round": int(number(row["round"], where, "round", required=True)),
                "reward_queries": int(number(row["reward_queries"], where, "reward_queries", required=True)),
                "reward_mean": number(row["reward_mean"], where, "reward_mean", required=True),
                "reward_se": std / math.sqrt(trajectories) if std is not None and trajectories else None,
            }
        )
    return out


def template_column(template, prompt_file):
    """Table column of an evaluation: "Temp. N" for templateN, else the template, else the prompt file's name."""
    if template:
        match = TEMPLATE.match(template)
        return f"Temp. {int(match.group(1))}" if match else template
    if prompt_file:
        return os.path.splitext(os.path.basename(prompt_file))[0]
    return "?"


def model_name(model):
    """The base checkpoint in words: "SD v1.4", another hub id as it is, "toy-world model", "tiny random model",
    or a local folder's name ("" when unknown)."""
    if not model:
        return ""
    parts = os.path.normpath(str(model)).split(os.sep)
    if str(model) == "CompVis/stable-diffusion-v1-4":
        return "SD v1.4"
    if parts[-2:] == ["toyworld", "model"]:
        return "toy-world model"
    if parts[-1].startswith("tiny-sd"):
        return "tiny random model"
    if not os.path.isabs(str(model)) and len(parts) == 2:
        return str(model)  # a hub id
    return parts[-1]


def base_label(bases):
    """The base model's row or bar: "<checkpoint> (base)" from the evaluations' settings, "base" when they name none."""
    models = sorted({b.model for b in bases if b.model})
    return f"{' / '.join(models)} (base)" if models else "base"


def read_evaluation(path, round_name, index, prompt_set, progress):
    """One eval JSON -> Evaluation. reward_queries falls back to progress.csv's row of the round (0 for base)."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise FiguresError(f"{path}: not a readable JSON file ({err})") from None
    if not isinstance(data, dict):
        raise FiguresError(f"{path}: not a JSON object")
    if data.get("prompt_set") not in (None, prompt_set):
        raise FiguresError(f"{path}: prompt_set={data['prompt_set']!r} but the file is named {prompt_set}.json")
    queries = number(data.get("reward_queries"), path, "reward_queries")
    if queries is None:
        row = next((r for r in progress if r["round"] == index), None)
        if index < 0:
            queries = 0
        elif row is not None:
            queries = row["reward_queries"]
        else:
            raise FiguresError(f"{path}: has no reward_queries and progress.csv has no row for round {index}")
    if queries < 0 or queries != int(queries):
        raise FiguresError(f"{path}: reward_queries={data.get('reward_queries')!r} is not a whole number >= 0")
    inception_std = number(data.get("inception_score_std"), path, "inception_score_std")
    splits = number(data.get("is_splits"), path, "is_splits") or 1
    method = data.get("method") if isinstance(data.get("method"), dict) else {}
    run = data.get("run") if isinstance(data.get("run"), dict) else {}
    return Evaluation(
        round=round_name,
        index=index,
        prompt_set=prompt_set,
        reward_queries=int(queries),
        clipscore=number(data.get("clipscore_mean"), path, "clipscore_mean", required=True),
        clipscore_sem=number(data.get("clipscore_sem"), path, "clipscore_sem"),
        inception=number(data.get("inception_score"), path, "inception_score"),
        inception_se=inception_std / math.sqrt(splits) if inception_std is not None and splits > 1 else None,
        inception_pp=number(data.get("inception_score_per_prompt"), path, "inception_score_per_prompt"),
        inception_pp_sem=number(data.get("inception_score_per_prompt_sem"), path, "inception_score_per_prompt_sem"),
        template=template_column(data.get("template"), data.get("prompt_file")),
        algorithm=str(method.get("algorithm") or "").lower(),
        method=str(method.get("label") or ""),
        same_as=json.dumps(data["settings"], sort_keys=True) if "settings" in data else os.path.abspath(path),
        alignment=number(data.get("alignment_mean"), path, "alignment_mean"),
        alignment_sem=number(data.get("alignment_sem"), path, "alignment_sem"),
        background_entropy=number(data.get("background_entropy"), path, "background_entropy"),
        bertscore=number(data.get("bertscore_mean"), path, "bertscore_mean"),
        bertscore_sem=number(data.get("bertscore_sem"), path, "bertscore_sem"),
        toycaption=number(data.get("toycaption_mean"), path, "toycaption_mean"),
        toycaption_sem=number(data.get("toycaption_sem"), path, "toycaption_sem"),
        model=model_name((data.get("settings") or {}).get("model")),
        learning_rate=number(run.get("learning_rate"), path, "run.learning_rate"),
        seed=run.get("seed") if isinstance(run.get("seed"), int) else None,
    )


def distinct(evaluations):
    """The evaluations, each identical one once: runs of one template share the base model's evaluation
    (same settings, same seeds, same numbers), which is one measurement, not one per seed."""
    seen = {}
    for evaluation in evaluations:
        seen.setdefault(evaluation.same_as, evaluation)
    return list(seen.values())


def load_runs(specs):
    """Positional arguments -> dict[label, list[Run]] in the order labels first appear; both prompt sets read."""
    groups, seen = {}, {}
    for spec in specs:
        label, path = split_spec(spec)
        if not os.path.isdir(path):
            raise FiguresError(f"{path}: no such run folder")
        real = os.path.realpath(path)
        if real in seen:
            raise FiguresError(f"{path}: given twice (also as {seen[real]!r}); each run counts once")
        seen[real] = spec
        progress_path = os.path.join(path, PROGRESS)
        files = {s: eval_files(path, s) for s in PROMPT_SETS}
        if not os.path.isfile(progress_path) and not any(files.values()):
            raise FiguresError(
                f"{path}: neither {PROGRESS} nor any base/eval/{{train,test}}.json or "
                f"round_NNN/eval/{{train,test}}.json: "
                "not a run folder (evaluate it with python -m b2diffurl.evaluate, or give <save_path>/<exp_name>)"
            )
        run = Run(label=label, path=os.path.abspath(path))
        run.progress = read_progress(progress_path) if os.path.isfile(progress_path) else []
        run.evals = {
            s: [read_evaluation(p, name, index, s, run.progress) for name, index, p in found]
            for s, found in files.items()
        }
        groups.setdefault(label, []).append(run)
    return groups
