"""NaN/inf never reaches a saved file: a non-finite reward, loss, gradient, LoRA or latent stops the
round with one line naming what went wrong, and nothing of that round's stage is saved."""

import copy
import os

import pytest
import torch
from conftest import REFERENCE_RUN, error_lines, run_driver, run_state

from b2diffurl import layout, records
from b2diffurl.errors import NonFiniteError, RecordError
from b2diffurl.models import load_policy
from b2diffurl.rewards import build_reward
from b2diffurl.sampler import sample_round
from b2diffurl.selection import select_round


@pytest.fixture(scope="module")
def accelerator():
    from accelerate import Accelerator

    return Accelerator(cpu=True)


@pytest.fixture
def sampled(tiny_config, accelerator):
    """(config, round folder) of a sampled round_000."""
    sample_round(tiny_config, accelerator, load_policy(tiny_config, "cpu"))
    return tiny_config, layout.round_dir(tiny_config)


def _listing(folder):
    return sorted(os.path.relpath(os.path.join(d, n), folder) for d, _, names in os.walk(folder) for n in names)


def test_a_nan_reward_names_its_images_and_saves_nothing(sampled):
    config, out = sampled
    colour = build_reward(config.reward, "cpu")

    def broken(images, prompts):
        scores = colour(images, prompts)
        scores[[3, 17]] = torch.tensor([float("nan"), float("inf")])
        return scores

    before = _listing(out)
    with pytest.raises(NonFiniteError) as err:
        select_round(config, broken, out, os.path.dirname(out))
    message = str(err.value)
    assert "NaN/inf for 2 of 48 images" in message and "images/00003.png, images/00017.png" in message
    assert "\n" not in message and err.value.exit_code == 3
    assert _listing(out) == before and not records.is_done(out, "select")


def test_a_corrupted_batch_is_named_with_its_recovery(sampled):
    config, out = sampled
    batch = os.path.join(out, "samples", "batch_00001.safetensors")
    data = bytearray(open(batch, "rb").read())
    data[len(data) // 2 : len(data) // 2 + 2048] = os.urandom(2048)  # a few KB overwritten, same size
    open(batch, "wb").write(bytes(data))
    before = _listing(out)
    with pytest.raises(RecordError) as err:
        select_round(config, build_reward(config.reward, "cpu"), out, os.path.dirname(out))
    message = str(err.value)
    assert "batch_00001.safetensors does not match its checksum" in message
    assert f"delete {layout.marker_path(out, 'sample')} and rerun" in message
    assert _listing(out) == before


def test_an_exploding_policy_stops_sampling_before_a_batch_is_saved(tiny_config, accelerator):
    pipeline = load_policy(tiny_config, "cpu")
    for p in pipeline.unet.parameters():
        if p.requires_grad:
            p.data.fill_(1e30)  # finite weights, non-finite activations
    with pytest.raises(NonFiniteError, match=r"sample round_000 batch 0: .* NaN/inf .* nothing of the batch was saved"):
        sample_round(tiny_config, accelerator, pipeline)
    out = layout.round_dir(tiny_config)
    assert not records.is_done(out, "sample") and not os.path.exists(os.path.join(out, "samples"))
    tmp = layout.stage_tmp_dir(out, "sample")
    assert not any(n.endswith(".safetensors") for n in os.listdir(os.path.join(tmp, "samples")))


def test_a_nan_lora_is_refused_when_loaded(tiny_config, tmp_path):
    from b2diffurl.models import load_lora, save_lora

    pipeline = load_policy(tiny_config, "cpu")
    for name, p in pipeline.unet.named_parameters():
        if "lora_B" in name:
            p.data.fill_(float("nan"))
    save_lora(pipeline.unet, str(tmp_path))
    with pytest.raises(NonFiniteError, match="holds NaN/inf weights"):
        load_lora(load_policy(tiny_config, "cpu").unet, str(tmp_path))


@pytest.mark.slow
def test_a_huge_learning_rate_stops_training_and_saves_nothing(reference_run, tmp_path):
    """LR=1e6 (the case that used to train and save an all-NaN LoRA): round 1 stops at the step that
    went non-finite, exit status 3, one line; round 1 keeps its samples and selection, gets no LoRA,
    and round 0 is untouched."""
    import shutil

    exp = tmp_path / REFERENCE_RUN["ExpName"]
    shutil.copytree(reference_run[1], exp)
    shutil.rmtree(exp / "round_001")
    before = run_state(exp / "round_000")
    proc = run_driver(tmp_path, check=False, **{**REFERENCE_RUN, "LR": "1e6", "AccStep": 1, "AllowChanges": 1})
    notes = [line for line in error_lines(proc.stderr) if line.startswith("note: AllowChanges=1: ")]
    assert len(notes) == 2 and "LR 0.003 -> 1000000.0 from round 1 on" in notes[1], notes
    lines = [line for line in error_lines(proc.stderr) if line not in notes]
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert lines[0].startswith("error: train round_001: ") and "at optimizer step" in lines[0]
    assert "nothing of round_001's training was saved" in lines[0] and "lower the learning rate" in lines[0]
    round1 = exp / "round_001"
    assert records.is_done(str(round1), "select") and not records.is_done(str(round1), "train")
    assert not (round1 / "lora").exists() and not (round1 / "metrics.json").exists()
    assert not (round1 / ".train.tmp").exists()
    assert run_state(exp / "round_000") == before
    assert (exp / "progress.csv").read_text().count("\n") == 2, "only round 0 is in the table"


def test_trainer_checks_every_optimizer_step(tiny_config, accelerator):
    """In process: a NaN loss (a NaN advantage weight slipped past the config) stops before saving."""
    from b2diffurl.trainer import train_round

    config = copy.deepcopy(tiny_config)
    pipeline = load_policy(config, "cpu")
    sample_round(config, accelerator, pipeline)
    out = layout.round_dir(config)
    select_round(config, build_reward(config.reward, "cpu"), out, os.path.dirname(out))
    config.train.beta1 = config.train.beta2 = float("nan")
    with pytest.raises(NonFiniteError, match="advantages are NaN/inf"):
        train_round(config, accelerator, pipeline, out)
    config.train.beta1 = config.train.beta2 = 1.0
    config.train.learning_rate = 1e6
    config.train.gradient_accumulation_steps = 1
    with pytest.raises(NonFiniteError, match=r"train round_000: .* at optimizer step \d+ of \d+"):
        train_round(config, accelerator, pipeline, out)
    assert not records.is_done(out, "train") and not os.path.exists(os.path.join(out, "lora"))
