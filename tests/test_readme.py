"""Every command in the README's ```bash blocks is run: the set-up and test commands by .ci/run, the
others here, verbatim, in a copy of the checkout (so the demo's outputs land where the README says
they do, without touching this checkout)."""

import os
import re
import shutil
import subprocess
import sys

import pytest
from conftest import REPO

CI_COMMANDS = (
    "python3 -m venv .venv && .venv/bin/pip install -r requirements.txt",
    "HF_HUB_OFFLINE=1 .venv/bin/python -m pytest",
)
RUN_HERE = (
    "CONFIG=config/stage_process.py:tiny bash run_process.sh",
    "CONFIG=config/stage_process.py:toy bash run_process.sh",
    ".venv/bin/python -m b2diffurl.figures model/runs/toy",
    ".venv/bin/python -m b2diffurl.toyworld compare model/runs/toy",
)


def readme_commands():
    """The command lines of the README's ```bash blocks, in order."""
    text = open(os.path.join(REPO, "README.md")).read()
    blocks = re.findall(r"^```bash\n(.*?)^```", text, flags=re.M | re.S)
    return [
        line.strip()
        for block in blocks
        for line in block.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def test_every_readme_command_is_run_by_ci_or_here():
    commands = readme_commands()
    assert set(CI_COMMANDS) <= set(commands), "the README shows the set-up and test commands"
    unknown = [c for c in commands if c not in CI_COMMANDS + RUN_HERE]
    assert not unknown, f"README commands no test runs: {unknown} (run them in test_readme_commands_run_verbatim)"
    ci = open(os.path.join(REPO, ".ci", "run")).read().splitlines()
    for command in CI_COMMANDS:
        assert command in ci, f".ci/run runs {command!r} verbatim"


def _checkout_copy(dest):
    """The tracked files of this checkout (as they are now) under ``dest``, with this checkout's venv."""
    files = (
        subprocess.run(["git", "-C", REPO, "ls-files", "-z"], capture_output=True, check=True)
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, files):
        if os.path.isfile(os.path.join(REPO, name)):
            os.makedirs(os.path.join(dest, os.path.dirname(name)), exist_ok=True)
            shutil.copy2(os.path.join(REPO, name), os.path.join(dest, name))
    os.symlink(os.path.dirname(os.path.dirname(sys.executable)), os.path.join(dest, ".venv"))


@pytest.mark.slow
def test_readme_commands_run_verbatim(tmp_path):
    """The README's demo commands, in its order, each as written (one round of 2 batches each and
    smaller evaluations: StageCnt=1 BatchCnt=2 EvalImages=70 in the environment); their outputs are where
    the README says."""
    if not os.path.isfile(os.path.join(os.path.dirname(sys.executable), "accelerate")):
        pytest.skip("needs the project's venv")
    copy = tmp_path / "checkout"
    _checkout_copy(str(copy))
    env = {k: v for k, v in os.environ.items() if k not in ("CONFIG", "SavePath", "PYTHON")}
    # one round of 2 batches (the toy preset runs 6 rounds of 8), and 70 images per prompt set and evaluation
    # instead of its 320 (the per-prompt IS needs 2 for each of its 35 training prompts): the flow as
    # written, at CI's cost
    env.update(HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", StageCnt="1", BatchCnt="2", EvalImages="70")
    outputs = {}
    for command in [c for c in readme_commands() if c in RUN_HERE]:
        proc = subprocess.run(["bash", "-c", command], cwd=copy, env=env, capture_output=True, text=True, timeout=1800)
        assert proc.returncode == 0, (command, proc.stdout[-3000:], proc.stderr[-3000:])
        outputs[command] = proc.stdout
    toy = copy / "model" / "runs" / "toy"
    demo = outputs["CONFIG=config/stage_process.py:toy bash run_process.sh"]
    tail = demo[demo.index("||=========== outcome of") :]
    assert "held-out prompts (10 prompts, 70 images):" in tail
    for line in ("  base ", "  best round_000 ", "  last round_000 ", "  last - base "):
        assert line in tail, tail
    assert re.search(r"last round_000   alignment \d+\.\d% ± \d+\.\d%", tail), tail
    header = open(toy / "progress.csv").readline()
    assert "test_alignment,test_alignment_sem" in header and (toy / "figures" / "bars_train.png").is_file()
    assert (toy / "base_vs_last.png").is_file() and (toy / "settings.json").is_file()
    # the default SaveInterval (0): a trained round keeps no interval latents; the rest stays
    round_000 = toy / "round_000"
    assert not (round_000 / "samples").exists() and not (round_000 / "selected.safetensors").exists()
    assert (round_000 / "images" / "00000.png").is_file() and (round_000 / "scores.json").is_file()
    assert (round_000 / "lora" / "pytorch_lora_weights.safetensors").is_file() and (
        round_000 / "metrics.json"
    ).is_file()
