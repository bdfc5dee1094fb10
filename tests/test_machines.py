"""Several machines: run_process.sh started once per "machine" on localhost (accelerate's
--num_machines 2, ranks 0 and 1, 127.0.0.1, gloo), against the same run on one machine."""

import hashlib
import json
import os
import socket
import subprocess
import sys
import time

import pytest
from conftest import REPO, _default_sigint, error_lines, run_driver

from b2diffurl import records
from b2diffurl.driver.machines import ephemeral_ports

RUN = {"StageCnt": 2, "BatchCnt": 2, "EvalInterval": 2, "SaveInterval": 1, "Seed": 9, "NUM_PROCESSES": 2}
TIMING_KEYS = {"seconds", "load_seconds", "peak_memory_bytes", "wall_seconds"}  # how long and how big, not what


def free_port():
    """A base port whose 16 ports (the launches take them in turn) are free on localhost, below the
    ephemeral range: the system hands ports of that range to outgoing connections (the gloo ranks of
    the other tests running beside this one), and one taken between this check and a launch stops that
    launch's rendezvous (the likely cause of a failure seen once: in a full suite beside the toy
    benchmark, the 2-machine run stopped before round 1's first launch)."""
    import random

    ephemeral = (ephemeral_ports() or (32768,))[0]
    for _ in range(100):
        base = random.randrange(10000, max(10001, ephemeral - 16))
        try:
            for port in range(base, base + 16):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no 16 free ports in a row on localhost")


def start_machine(save_path, rank, port, fault="", **variables):
    """One machine's driver, in its own session (a fault kills that machine's whole process group)."""
    env = {k: v for k, v in os.environ.items() if k != "B2DIFFURL_FAULT"}
    env.update(
        {
            "HF_HUB_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
            "PYTHON": sys.executable,
            "CONFIG": "config/stage_process.py:tiny",
            "SavePath": str(save_path),
            "NUM_MACHINES": "2",
            "MACHINE_RANK": str(rank),
            "MAIN_PROCESS_IP": "127.0.0.1",
            "MAIN_PROCESS_PORT": str(port),
            "ACCELERATE_ARGS": "--rdzv_conf timeout=120",
            **{k: str(v) for k, v in {**RUN, **variables}.items()},
        }
    )
    if fault:
        env["B2DIFFURL_FAULT"] = fault
    return subprocess.Popen(
        ["bash", os.path.join(REPO, "run_process.sh")],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=_default_sigint,
    )


def two_machines(save_paths, fault_on_1="", **variables):
    """Both machines' drivers at once; returns [(exit status, stdout, stderr, seconds)] of ranks 0 and 1."""
    port = free_port()
    started = time.time()
    procs = [
        start_machine(path, rank, port, fault_on_1 if rank == 1 else "", **variables)
        for rank, path in enumerate(save_paths)
    ]
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=900)
        out.append((proc.returncode, stdout, stderr, time.time() - started))
    return out


def stripped(value):
    if isinstance(
        value, dict
    ):  # a marker's checksums of JSON files hash their timings too: those files are compared stripped
        return {k: stripped(v) for k, v in value.items() if k not in TIMING_KEYS and not k.endswith(".json")}
    if isinstance(value, list):
        return [stripped(v) for v in value]
    return value


def contents(exp_dir):
    """{relative path: what the file says}: tensors, images and scores byte for byte; JSON without its
    timing and memory fields (and markers without their checksums of JSON files); progress.csv without its
    seconds column; settings.json left out (it records the machines and paths)."""
    out = {}
    for folder, _, files in os.walk(exp_dir):
        for name in files:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, exp_dir)
            if name in (".run.lock", "settings.json") or rel.startswith("figures"):
                continue
            if name.endswith((".json", ".done")):
                out[rel] = stripped(json.loads(open(path).read()))
            elif name == "progress.csv":
                rows = [line.split(",") for line in open(path).read().splitlines()]
                drop = rows[0].index("seconds")
                out[rel] = [row[:drop] + row[drop + 1 :] for row in rows]
            else:
                out[rel] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    return out


def snapshot(exp_dir):
    return {
        os.path.join(f, n): os.stat(os.path.join(f, n)).st_mtime_ns
        for f, _, ns in os.walk(exp_dir)
        for n in ns
        if n != ".run.lock"
    }


@pytest.mark.slow
def test_two_machines_run_as_one_machine_with_two_processes(tmp_path):
    """Two rounds with evaluation on 2 machines x 1 process equal 1 machine x 2 processes: samples,
    selections, LoRA and optimizer state, images, scores, evaluations. A rerun of both rewrites
    nothing. Killing machine 1 mid-sampling stops machine 0 at once with one line; a rerun of both
    (one process per round) ends identical to the uninterrupted run. A machine that does not see the
    run folder stops both before round 0 with one line."""
    # the reference: 1 machine x 2 processes, a round per process (the same files as the stage scripts,
    # which the 2-machine run below uses, selection launched on both machines)
    one = run_driver(tmp_path / "one", ExpName="run", ACCELERATE_ARGS="--main_process_port 0", OneProcess=1, **RUN)
    assert "2 process(es)," in one.stdout
    for r in range(2):  # the 1 x 2 run: both ranks sampled and trained (as two processes on one machine do)
        metrics = records.read_json(tmp_path / "one" / "run" / f"round_{r:03d}" / "metrics.json")
        first, second = metrics["lora_checksum_by_rank"]
        assert metrics["num_processes"] == 2 and first == second and metrics["first_step_max_ratio_deviation"] < 1e-5
    manifest = records.read_json(tmp_path / "one" / "run" / "round_000" / "samples" / "manifest.json")
    assert sorted({b["rank"] for b in manifest["batches"]}) == [0, 1]

    results = two_machines([tmp_path / "two"] * 2, ExpName="run")
    for rank, (code, stdout, stderr, _) in enumerate(results):
        assert code == 0, f"machine {rank}: {stderr[-3000:]}"
        assert f"2 process(es) on 2 machines (this one: rank {rank}" in stdout
    assert "machine rank 0 writes the report" in results[1][1] and "last - base" in results[0][1]
    reference = contents(tmp_path / "one" / "run")
    assert any(k.endswith("optimizer.safetensors") for k in reference) and any("samples" in k for k in reference)
    assert any(k.endswith("selected.safetensors") for k in reference) and any(
        k.endswith("eval/test.json") for k in reference
    )
    assert contents(tmp_path / "two" / "run") == reference

    before = snapshot(tmp_path / "two" / "run")
    again = two_machines([tmp_path / "two"] * 2, ExpName="run")
    assert all(code == 0 for code, *_ in again), again[0][2][-3000:] + again[1][2][-3000:]
    assert snapshot(tmp_path / "two" / "run") == before, "a rerun rewrites nothing"

    # one process per round from here (the same files as the stage scripts, fewer launches)
    killed = two_machines(
        [tmp_path / "killed"] * 2, fault_on_1="KILL:round_001/sample.batch", ExpName="run", OneProcess=1
    )
    (code0, _, stderr0, seconds0), (code1, *_) = killed
    assert code1 != 0 and code0 != 0 and seconds0 < 240, f"machine 0 stopped after {seconds0:.0f} s"
    # one error line: the rank's own when the broken connection reaches Python, the launcher's when the
    # C++ runtime aborted the rank first (it may leave its "terminate called ..." line above)
    errors = [line for line in error_lines(stderr0) if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(
        "error: lost contact with another process of this run mid-stage"
    ), stderr0[-3000:]
    assert not (tmp_path / "killed" / "run" / "round_001" / "sample.done").exists()
    resumed = two_machines([tmp_path / "killed"] * 2, ExpName="run", OneProcess=1)
    assert all(code == 0 for code, *_ in resumed), resumed[0][2][-3000:] + resumed[1][2][-3000:]
    assert contents(tmp_path / "killed" / "run") == reference

    blind = two_machines([tmp_path / "seen", tmp_path / "elsewhere"], ExpName="run")
    for code, _, stderr, _ in blind:
        lines = error_lines(stderr)
        assert (
            code == 2 and len(lines) == 1 and "machine rank 1" in lines[0] and "cannot see the run folder" in lines[0]
        ), stderr[-3000:]
    assert not (tmp_path / "seen" / "run" / "round_000").exists() and not (tmp_path / "elsewhere").exists()


@pytest.mark.slow
def test_a_machine_alone_stops_when_the_others_do_not_come(tmp_path):
    """Machine rank 1 started without machine 0 waits for it as long as the rendezvous allows (here
    5 s), then stops with one line that says what to check; it writes nothing."""
    proc = start_machine(tmp_path, 1, free_port(), ExpName="run", ACCELERATE_ARGS="--rdzv_conf timeout=5")
    _, stderr = proc.communicate(timeout=300)
    lines = error_lines(stderr)
    assert proc.returncode == 4 and len(lines) == 1, stderr[-3000:]
    assert lines[0].startswith("error: the machines did not meet") and "MAIN_PROCESS_IP" in lines[0]
    assert not (tmp_path / "run").exists()
