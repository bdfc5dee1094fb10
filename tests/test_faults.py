"""Stops at the worst moments (SIGKILL of the whole process group, Ctrl-C), then reruns: the run
folder ends identical to an uninterrupted run's, file list, LoRA and optimizer bytes and progress.csv included."""

import glob
import os

import pytest
from conftest import REFERENCE_RUN, error_lines, run_driver, run_state

from b2diffurl import records
from b2diffurl.cli import INTERRUPTED

# Each run of the chain is stopped at one point (B2DIFFURL_FAULT, see records.fault_point) and the
# next one continues from there; `damage` runs between two runs.
STOPS = [
    # Ctrl-C after the first sampled batch
    ("INT:round_000/sample.batch", None),
    # a torn batch file in the interrupted round's temporary folder (must be resampled, not trusted),
    # then a kill between writing batch 1 and renaming it (leaves batch_00001.safetensors.tmp-PID)
    ("KILL:write batch_00001.safetensors", "truncate batch 0"),
    # half way through moving the finished sampling into the round folder
    ("KILL:round_000/sample.move", "check stray"),
    # select.done written, its temporary folder not yet removed
    ("KILL:round_000/select.marker", None),
    # after the first optimizer step (nothing of the training is saved)
    ("KILL:round_000/train.step", None),
    # train.done written, before the driver's report: progress.csv lacks the round
    ("KILL:round_000/train.done", None),
    # round 1: train.done written, .train.tmp/ left, samples/ not yet removed (SaveInterval=2)
    ("KILL:round_001/train.marker", None),
]


@pytest.mark.slow
def test_stops_anywhere_then_rerun_give_the_uninterrupted_run(reference_run, tmp_path):
    _, reference = reference_run
    exp = tmp_path / REFERENCE_RUN["ExpName"]
    for fault, damage in STOPS:
        if damage == "truncate batch 0":
            batch = exp / "round_000" / ".sample.tmp" / "samples" / "batch_00000.safetensors"
            batch.write_bytes(batch.read_bytes()[:1000])
        if damage == "check stray":
            strays = glob.glob(str(exp / "round_000" / ".sample.tmp" / "samples" / "*.tmp-*"))
            assert strays, "the kill left a temporary file behind, which must not reach samples/"
        proc = run_driver(tmp_path, check=False, B2DIFFURL_FAULT=fault, **REFERENCE_RUN)
        if fault.startswith("INT:"):
            assert proc.returncode == 130, proc.stderr[-3000:]
            assert error_lines(proc.stderr)[-1] == INTERRUPTED and "Traceback" not in proc.stderr
        else:
            assert proc.returncode == -9, (fault, proc.returncode, proc.stderr[-3000:])
    final = run_driver(tmp_path, **REFERENCE_RUN)
    assert "all 2 rounds finished" in final.stdout
    assert run_state(exp) == run_state(reference)
    for name in ("round_001/lora/pytorch_lora_weights.safetensors", "round_001/lora/optimizer.safetensors"):
        assert (exp / name).read_bytes() == (reference / name).read_bytes()
    assert not glob.glob(str(exp / "**" / "*.tmp-*"), recursive=True)
    assert not os.path.exists(exp / "round_001" / "samples"), "SaveInterval=2 removed the trained round's samples/"
    assert (exp / "progress.csv").read_text().count("\n") == 3, "header + 2 rounds"


@pytest.mark.slow
def test_a_deleted_progress_table_is_rebuilt(reference_run, tmp_path):
    import shutil

    _, reference = reference_run
    exp = tmp_path / REFERENCE_RUN["ExpName"]
    shutil.copytree(reference, exp)
    (exp / "progress.csv").unlink()
    run_driver(tmp_path, **REFERENCE_RUN)
    assert (exp / "progress.csv").read_text() == (reference / "progress.csv").read_text()


def test_finish_stage_never_moves_temporary_files_and_drops_later_markers(tmp_path):
    round_dir = tmp_path / "round_000"
    tmp = round_dir / ".sample.tmp" / "samples"
    tmp.mkdir(parents=True)
    digest = records.write_bytes(str(tmp / "batch_00000.safetensors"), b"abc")
    (tmp / "batch_00001.safetensors.tmp-4242").write_bytes(b"half a batch")
    records.write_json(str(round_dir / "select.done"), {"files": {}})  # derived from the old samples
    marker = records.finish_stage(
        str(round_dir), "sample", {"seconds": 1.0}, {"samples/batch_00000.safetensors": digest}
    )
    assert sorted(os.listdir(round_dir / "samples")) == ["batch_00000.safetensors"]
    assert not (round_dir / "select.done").exists() and not (round_dir / ".sample.tmp").exists()
    assert marker["files"] == {"samples/batch_00000.safetensors": digest}
    assert records.read_verified(str(round_dir), "sample", "samples/batch_00000.safetensors") == b"abc"


@pytest.mark.slow
def test_one_process_per_round_stops_and_ends_as_the_reference_run(reference_run, tmp_path):
    """OneProcess=1 (python -m b2diffurl.round: a round's three stages in one process), killed after
    selection's marker and rerun, ends with the files the three stage scripts wrote, byte for byte;
    only the recorded setting differs."""
    _, reference = reference_run
    exp = tmp_path / REFERENCE_RUN["ExpName"]
    proc = run_driver(
        tmp_path, check=False, B2DIFFURL_FAULT="KILL:round_000/select.marker", OneProcess=1, **REFERENCE_RUN
    )
    assert proc.returncode == -9 and (exp / "round_000" / "sample.done").is_file()
    assert not (exp / "round_000" / "train.done").exists()
    final = run_driver(tmp_path, OneProcess=1, **REFERENCE_RUN)
    assert final.stdout.count("train round_00") == 2 and "sample round_000" not in final.stdout, (
        "round 0 went on from training"
    )
    state, expected = run_state(exp), run_state(reference)
    assert state.pop("settings.json") != expected.pop("settings.json")
    assert state == expected
    settings = records.read_json(exp / "settings.json")
    assert settings["config"]["process.one_process"] == 1 and settings["variables"]["OneProcess"] == 1
