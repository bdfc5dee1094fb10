"""run_sample.py as users run it: plain python, and accelerate launch with 2 processes."""

import glob
import hashlib
import os

import pytest
from conftest import accelerate_two_processes, run_stage

from b2diffurl import records


def _flags(tiny_dir, save_path, *extra):
    return (
        "--config",
        "config/stage_process.py:tiny",
        "--config.pretrained.model",
        tiny_dir,
        "--config.save_path",
        str(save_path),
        *extra,
    )


def _image_hashes(round_dir):
    paths = sorted(glob.glob(os.path.join(round_dir, "images", "*.png")))
    return [hashlib.sha256(open(p, "rb").read()).hexdigest() for p in paths]


def test_plain_run_writes_distinct_images_and_a_summary(tiny_dir, tmp_path):
    from config.stage_process import get_config

    config = get_config("tiny")
    proc = run_stage("run_sample.py", *_flags(tiny_dir, tmp_path))
    out = tmp_path / config.exp_name / config.run_name
    expected = config.sample.batch_size * config.sample.num_batches_per_epoch * config.split_time
    hashes = _image_hashes(out)
    assert len(hashes) == len(set(hashes)) == expected
    assert f"{expected} trajectories, {expected} images" in proc.stdout
    assert records.is_done(out, "sample")
    assert not glob.glob(str(tmp_path / "**" / "*.pkl"), recursive=True)
    # A second run skips the finished round and changes nothing.
    before = {p: os.path.getmtime(p) for p in glob.glob(str(out / "**" / "*"), recursive=True)}
    again = run_stage("run_sample.py", *_flags(tiny_dir, tmp_path))
    assert "already done, skipped" in again.stdout
    assert before == {p: os.path.getmtime(p) for p in glob.glob(str(out / "**" / "*"), recursive=True)}


@pytest.mark.slow
def test_one_and_two_processes_write_the_same_round(tiny_dir, tmp_path):
    extra = ("--config.sample.num_batches_per_epoch", "4", "--config.seed", "7")
    # accelerate launch gives each rank OMP_NUM_THREADS=1; CPU kernels sum in another order with
    # another thread count (differences ~1e-5), so the 1-process run uses one thread too.
    run_stage("run_sample.py", *_flags(tiny_dir, tmp_path / "one", *extra), env={"OMP_NUM_THREADS": "1"})
    run_stage("run_sample.py", *_flags(tiny_dir, tmp_path / "two", *extra), launcher=accelerate_two_processes())
    one, two = tmp_path / "one" / "tiny" / "round_000", tmp_path / "two" / "tiny" / "round_000"
    manifest = records.read_json(two / "samples" / "manifest.json")
    assert manifest["num_processes"] == 2
    assert sorted({b["rank"] for b in manifest["batches"]}) == [0, 1], "both ranks must have sampled batches"
    assert [b["rank"] for b in manifest["batches"]] == [0, 1, 0, 1]
    assert _image_hashes(one) == _image_hashes(two)
    from config.stage_process import get_config

    assert len(_image_hashes(one)) == get_config("tiny").sample.batch_size * 4 * 3
    assert records.read_json(one / "prompts.json") == records.read_json(two / "prompts.json")
    for name in sorted(os.listdir(one / "samples")):
        if name.endswith(".safetensors"):
            a = records.trajectories_from_tensors(records.read_verified_tensors(one, "sample", f"samples/{name}")[0])[0]
            b = records.trajectories_from_tensors(records.read_verified_tensors(two, "sample", f"samples/{name}")[0])[0]
            for key, value in a.tensors().items():
                assert value.equal(b.tensors()[key]), (name, key)
