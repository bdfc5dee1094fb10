"""One process against three (``python -m b2diffurl.bench --one-process N``): a round as the three stage
scripts and as ``python -m b2diffurl.round`` (OneProcess=1), alternated, and what one process saves."""

import os
import shutil
import statistics
import sys

from b2diffurl import records
from b2diffurl.bench.models import setting_models
from b2diffurl.bench.process import run_measured, run_script
from b2diffurl.bench.setting import STAGES, setting_round_dir, stage_flags

WAYS = ("stages", "one_process")


def _round_wall(how, flags):
    """Wall seconds of one round run ``how``: the three stage processes' sum, or the one process's."""
    if how == "stages":
        return sum(run_script(script, flags)[0] for _, script in STAGES)
    return run_measured([sys.executable, "-m", "b2diffurl.round", *flags])[0]


def run_one_process(setting, models, workdir, repeats):
    """A round as the three stage scripts (three processes) and as ``python -m b2diffurl.round`` (one
    process: OneProcess=1), ``repeats`` times each, alternated so that a drift of the machine's speed
    falls on both; returns {"stages": [wall s], "one_process": [wall s], "same_files": bool}."""
    pipeline_dir, clip_path = setting_models(setting, models)
    walls, rounds = {how: [] for how in WAYS}, {}
    for i in range(repeats):
        for how in walls:
            save_path = os.path.join(workdir, "one_process", how)
            shutil.rmtree(save_path, ignore_errors=True)
            flags = stage_flags(setting, pipeline_dir, clip_path, save_path)
            print(f"bench: round {i + 1}/{repeats}, {how.replace('_', ' ')} ...", flush=True)
            walls[how].append(_round_wall(how, flags))
            rounds[how] = setting_round_dir(setting, save_path)
    same = all(
        records.read_json(os.path.join(rounds["stages"], name))
        == records.read_json(os.path.join(rounds["one_process"], name))
        for name in ("scores.json",)
    )
    return {**walls, "same_files": same}


def one_process_report(setting, result):
    """Markdown: a round's wall time both ways and what one process saves."""
    stages, one = (statistics.fmean(result[k]) for k in WAYS)

    def runs(k):
        return ", ".join(f"{w:.1f}" for w in result[k])

    return "\n".join(
        [
            f"A round of setting `{setting.name}` ({setting.resolution} px, {setting.num_batches} batch(es)), "
            f"{len(result['stages'])} time(s) each way, alternated:",
            "",
            "| driver | wall s per round (each run) | mean |",
            "| --- | --- | --- |",
            f"| three stage processes (OneProcess=0) | {runs('stages')} | {stages:.1f} |",
            f"| one process (OneProcess=1, python -m b2diffurl.round) | {runs('one_process')} | {one:.1f} |",
            "",
            f"One process saves {stages - one:.1f} s a round ({(stages - one) / stages:.0%}); the scores are "
            + ("the same." if result["same_files"] else "NOT the same: report this."),
        ]
    )
