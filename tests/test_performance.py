"""Performance features: stored latent dtype and bytes, what a round keeps, mixed precision, gradient
checkpointing, the runtime switches (tiny model, CPU), and the paper-scale benchmark (slow)."""

import copy
import os

import conftest
import pytest
import torch

from b2diffurl import layout, records
from b2diffurl.models import load_lora, load_policy, set_attention, set_channels_last
from b2diffurl.optimizer_state import OPTIMIZER_NAME, trainable_parameters
from b2diffurl.policy import Policy, backward_batch
from b2diffurl.train_batches import interval_pairs
from b2diffurl.trainer import train_round

# The stated bf16 tolerance of the on-policy ratio at the first step: the sampler and the trainer run
# the same bf16 UNet on the same stored latents, but in batches of another composition, and a GPU may
# pick other bf16 kernels per shape (eps differs by ~1e-3 relative; the per-element-mean log-prob
# moves by less than 1e-2). On this CPU the deviation measured 0.0.
BF16_RATIO_TOLERANCE = 1e-2


def run_round(config, accelerator, r, resume_from=""):
    """One full round in process; returns (round folder, the pipeline, train metrics)."""
    out, _, metrics, pipeline = conftest.run_round(config, accelerator, r, resume_from)
    return out, pipeline, metrics


@pytest.fixture
def fresh_accelerator():
    """Accelerator(mixed_precision=...) factory: accelerate's state is one per process, so it is reset
    before each and after the test (later tests get the default, fp32, again)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    def make(mixed_precision="no"):
        AcceleratorState._reset_state(reset_partial_state=True)
        return Accelerator(mixed_precision=mixed_precision, cpu=True)

    yield make
    AcceleratorState._reset_state(reset_partial_state=True)


def test_latents_are_stored_in_fp16_and_their_log_probs_are_exact(tiny_config):
    from accelerate import Accelerator

    assert tiny_config.sample.latent_dtype == "fp16"  # the default
    out, _, metrics = run_round(tiny_config, Accelerator(cpu=True), 0)
    manifest, trajectories = records.load_samples(out)
    assert trajectories.latents.dtype == torch.float16 and trajectories.log_probs.dtype == torch.float32
    selected, _ = records.trajectories_from_tensors(
        records.read_verified_tensors(out, "select", "selected.safetensors")[0]
    )
    assert selected.latents.dtype == torch.float16
    # the chain ran on the rounded values, so training recomputes the recorded log-probs exactly
    assert metrics.first_step_max_ratio_deviation < 1e-5

    # the bytes on disk are what records.trajectory_nbytes computes from the shapes
    k, shape = tiny_config.split_step, manifest["latent_shape"][1:]
    per_batch = tiny_config.sample.batch_size * tiny_config.split_time
    for batch in manifest["batches"]:
        assert records.safetensors_payload(
            os.path.join(out, "samples", batch["file"])
        ) == per_batch * records.trajectory_nbytes(k, shape, 2)
    assert records.safetensors_payload(os.path.join(out, "selected.safetensors")) == len(
        selected
    ) * records.trajectory_nbytes(k, shape, 2, selected=True)
    assert records.trajectory_nbytes(k, shape, 2) < records.trajectory_nbytes(k, shape, 4) * 0.55


def test_performance_settings_are_checked_in_one_line_each(tiny_config):
    from b2diffurl.checks import check_config

    assert not check_config(tiny_config)[0].problems
    tiny_config.sample.latent_dtype = "fp8"
    tiny_config.sample.decode_batch_size = -1
    tiny_config.runtime.attention = "flash"
    assert [str(p) for p in check_config(tiny_config)[0].problems] == [
        "sample.decode_batch_size=-1 must be >= 0 (0 decodes a whole batch at once)",
        "sample.latent_dtype='fp8' must be one of fp16, fp32 (fp16 halves the interval latents on disk, "
        "exactly recomputable)",
        "runtime.attention='flash' must be one of sdpa, math (sdpa: torch's fused attention; "
        "math: the plain reference)",
    ]


def test_the_benchmark_refuses_what_it_cannot_run(capsys):
    import torch

    from b2diffurl.bench import cli as bench
    from b2diffurl.bench.shapes import BACKBONES

    with pytest.raises(SystemExit):
        bench.parse_args(["--resolution", "100"])
    assert "--resolution=100 must be a multiple of 64" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.parse_args(["--small", "--chunks", "1,x"])
    assert "--chunks=1,x must be positive integers" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.parse_args(["--small", "--repeats", "0"])
    assert "--repeats=0 must be >= 1" in capsys.readouterr().err
    setting, _ = bench.parse_args(["--small", "--batches", "2", "--gradient-checkpointing"])
    assert (setting.resolution, setting.num_batches, setting.gradient_checkpointing, setting.mixed_precision) == (
        64,
        2,
        True,
        "no",
    )
    assert setting.repeats == 5 and bench.parse_args(["--small", "--repeats", "1"])[0].repeats == 1
    with pytest.raises(SystemExit):
        bench.parse_args(["--backbone", "sd3"])
    assert "--backbone: invalid choice: 'sd3'" in capsys.readouterr().err
    # each backbone's full setting is at its own resolution unless --resolution says otherwise
    assert [bench.parse_args(["--backbone", b])[0].resolution for b in BACKBONES] == [512, 768, 1024]
    assert bench.parse_args(["--backbone", "sdxl", "--resolution", "512"])[0].resolution == 512
    if not torch.cuda.is_available():  # the full setting is fp16: one line saying how to run on a CPU
        assert bench.main([]) == 2
        assert "needs a GPU and none is visible" in capsys.readouterr().err


def test_a_trained_round_without_its_latents_names_the_way_back(tiny_config):
    from accelerate import Accelerator

    from b2diffurl.driver.books import catch_up
    from b2diffurl.errors import RecordError

    out, pipeline, _ = run_round(tiny_config, Accelerator(cpu=True), 0)
    catch_up(os.path.dirname(out), 0)  # the default: no round keeps its interval latents once trained
    assert not os.path.exists(os.path.join(out, "samples")) and not os.path.exists(
        os.path.join(out, "selected.safetensors")
    )
    assert os.path.isfile(os.path.join(out, "scores.json")) and os.path.isfile(os.path.join(out, "images", "00000.png"))
    os.remove(layout.marker_path(out, "train"))
    config = copy.deepcopy(tiny_config)
    with pytest.raises(RecordError, match=r"holds no interval latents .* delete .*sample.done and rerun"):
        train_round(config, Accelerator(cpu=True), pipeline, out)


def test_fp32_storage_is_the_unrounded_chain(tiny_config, pipeline):
    """latent_dtype fp32 leaves the chain as it was; fp16 changes each latent by at most its rounding."""
    from b2diffurl.backbones import encode_prompts
    from b2diffurl.sampler import batch_generator, sample_branches

    embeds, negative = encode_prompts(pipeline, ["red apple", "blue car"]), encode_prompts(pipeline, [""])
    runs = {}
    for dtype in (torch.float32, torch.float16):
        runs[dtype] = sample_branches(pipeline, embeds, negative, batch_generator(1, 0), 4, 3, 2, 5.0, 1.0, dtype)
    exact, rounded = runs[torch.float32]["latents"], runs[torch.float16]["latents"]
    assert exact.dtype == torch.float32 and rounded.dtype == torch.float16
    difference = (rounded.float() - exact).abs()
    assert 0 < difference.max() < 0.05, "fp16 rounding (a few 1e-3, carried along the chain)"


@pytest.fixture
def small_batch(tiny_config):
    """(config, pipeline, policy, pairs, prompt embeds, advantages) of one tiny train batch."""
    from accelerate import Accelerator

    from b2diffurl.backbones import encode_prompts

    out, _, _ = run_round(tiny_config, Accelerator(cpu=True), 0)
    pipeline = load_policy(tiny_config, "cpu")
    load_lora(pipeline.unet, os.path.join(out, "lora"))  # a non-trivial policy
    manifest, trajectories = records.load_samples(out)
    batch = trajectories.select(torch.arange(4))
    pipeline.scheduler.set_timesteps(tiny_config.sample.num_steps)
    policy = Policy(
        pipeline.unet,
        pipeline.scheduler,
        encode_prompts(pipeline, [""]),
        tiny_config.sample.guidance_scale,
        tiny_config.sample.eta,
    )
    embeds = encode_prompts(pipeline, manifest["prompt_list"])[batch.prompt_ids]
    pairs = interval_pairs(batch, torch.Generator().manual_seed(0))
    return tiny_config, pipeline, policy, pairs, embeds, torch.tensor([1.0, -0.5, 2.0, -1.5])


def lora_gradient(pipeline, policy, pairs, embeds, advantages, config, chunk=4):
    from b2diffurl.objectives import make_objective

    params = [p for _, p in trainable_parameters(pipeline.unet)]
    for p in params:
        p.grad = None
    backward_batch(
        policy, pairs, embeds, advantages, make_objective(config.train), 0.1, chunk, 1.0, lambda loss: loss.backward()
    )
    return torch.cat([p.grad.flatten() for p in params])


def test_gradient_checkpointing_gives_the_same_gradient(small_batch):
    config, pipeline, policy, pairs, embeds, advantages = small_batch
    pipeline.unet.train()
    plain = lora_gradient(pipeline, policy, pairs, embeds, advantages, config)
    pipeline.unet.enable_gradient_checkpointing()
    assert pipeline.unet.is_gradient_checkpointing
    checkpointed = lora_gradient(pipeline, policy, pairs, embeds, advantages, config)
    assert plain.abs().max() > 0
    torch.testing.assert_close(checkpointed, plain, atol=1e-6 * plain.abs().max().item(), rtol=1e-5)


def test_runtime_switches_keep_the_math(small_batch):
    """math attention and channels-last give the gradient of the default (sdpa, contiguous) within fp32 noise."""
    config, pipeline, policy, pairs, embeds, advantages = small_batch
    reference = lora_gradient(pipeline, policy, pairs, embeds, advantages, config)
    set_attention(pipeline.unet, "math")
    set_channels_last(pipeline)
    switched = lora_gradient(pipeline, policy, pairs, embeds, advantages, config)
    torch.testing.assert_close(switched, reference, atol=1e-4 * reference.abs().max().item(), rtol=1e-3)
    with pytest.raises(ValueError, match="runtime.attention='flash' is not known"):
        set_attention(pipeline.unet, "flash")


def test_bf16_end_to_end_on_the_cpu(tiny_config, fresh_accelerator):
    """bf16 frozen weights, fp32 LoRA, AdamW and step math: two rounds sample, select and train."""
    from safetensors.torch import load_file

    tiny_config.mixed_precision = "bf16"
    tiny_config.sample.num_batches_per_epoch = 1  # bf16 kernels are slow on the CPU: one batch a round will do
    accelerator = fresh_accelerator("bf16")
    out0, pipeline, m0 = run_round(tiny_config, accelerator, 0)
    assert pipeline.unet.conv_in.weight.dtype == torch.bfloat16 and pipeline.vae.dtype == torch.bfloat16
    lora = [p for _, p in trainable_parameters(pipeline.unet)]
    assert lora and all(p.dtype == torch.float32 for p in lora), "the LoRA stays fp32"
    assert m0.optimizer_steps > 0
    assert m0.first_step_max_ratio_deviation < BF16_RATIO_TOLERANCE
    saved = load_file(os.path.join(out0, "lora", "pytorch_lora_weights.safetensors"))
    assert saved and all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in saved.values())
    state = load_file(os.path.join(out0, "lora", OPTIMIZER_NAME))
    assert all(v.dtype in (torch.float32, torch.int64) for k, v in state.items() if not k.endswith(".step"))
    _, _, m1 = run_round(tiny_config, accelerator, 1, resume_from=os.path.join(out0, "lora"))
    assert m1.optimizer_steps > 0 and m1.first_step_max_ratio_deviation < BF16_RATIO_TOLERANCE


def test_fp16_gradient_scaler_continues_across_rounds(tiny_config, fresh_accelerator):
    """Under fp16 the loss scale and its growth tracker are saved with the AdamW state and continue in
    the next round (a GradScaler on the CPU stands in for accelerate's CUDA one)."""

    def fp16_accelerator():
        accelerator = fresh_accelerator("fp16")
        accelerator.native_amp = True  # accelerate makes no scaler on the CPU: give it torch's CPU GradScaler
        accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=1)
        return accelerator

    tiny_config.mixed_precision = "no"  # fp32 weights (fp16 kernels are GPU work); the scaler path is what is tested
    first = fp16_accelerator()
    out0, _, m0 = run_round(tiny_config, first, 0)
    assert m0.optimizer_steps > 0 and m0.extra["grad_scaler_resumed"] is False
    # growth_interval 1: every finite step doubles the scale
    assert m0.extra["grad_scale"] == 2.0**10 * 2**m0.optimizer_steps
    second = fp16_accelerator()
    _, _, m1 = run_round(tiny_config, second, 1, resume_from=os.path.join(out0, "lora"))
    assert m1.extra["grad_scaler_resumed"] is True
    assert m1.extra["grad_scale"] == m0.extra["grad_scale"] * 2**m1.optimizer_steps, "round 1 continued round 0's scale"
    assert m1.first_step_max_ratio_deviation < 1e-5


@pytest.mark.slow
@pytest.mark.bench
def test_paper_scale_benchmark_small_setting(tmp_path):
    """python -m b2diffurl.bench --small: SD v1.4's networks (random weights) through the three stage
    scripts on the CPU; the table, the efficiencies, the bytes against the shapes, the disk saving."""
    import json
    import subprocess
    import sys

    from conftest import REPO

    proc = subprocess.run(
        [sys.executable, "-m", "b2diffurl.bench", "--small", "--workdir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for header in (
        "| stage | seconds | model load s |",
        "| sample |",
        "| select |",
        "| train |",
        "Projected wall time",
    ):
        assert header in proc.stdout
    result = json.loads((tmp_path / "bench_small.json").read_text())
    rows, disk = result["analysis"]["rows"], result["analysis"]["disk"]
    for stage in ("sample", "select", "train"):
        stage_result = result["stages"][stage]
        assert (
            stage_result["seconds"] > 0
            and stage_result["load_seconds"] > 0
            and stage_result["peak_memory_bytes"] > 2**30
        )
        # the stage's work at the bare rate over its time: near 1 when the stage is UNet- (CLIP-) bound
        assert 0.5 < rows[stage]["efficiency"] < 1.3, (stage, rows[stage])
    assert result["stages"]["sample"]["bytes_written"] > 0 and result["stages"]["train"]["bytes_written"] > 0
    # the stored tensors are exactly what the shapes say, and a default round keeps at most half of before
    assert disk["measured_tensor_bytes"] == disk["predicted_tensor_bytes"] > 0
    assert disk["paper_round0"]["now"]["written"] < disk["paper_round0"]["before"]["written"]
    assert disk["paper_round0"]["now"]["kept"] <= 0.5 * disk["paper_round0"]["before"]["kept"]
    assert disk["paper_round0"]["now"]["samples"] < 0.51 * disk["paper_round0"]["before"]["samples"]  # fp16 latents
    assert result["analysis"]["projection"]["hours"] > 0


def test_tf32_is_off_while_scoring_and_on_for_the_unet(tiny_config):
    """allow_tf32 (the default) turns TF32 on for the UNet's matmuls (sampling, training, evaluation's
    sampling), while every CLIP forward of selection and evaluation, and the zero-shot matmul of the
    Inception Score, run with it off; the flags are read where each model runs."""
    from b2diffurl import cli, metrics, tf32
    from b2diffurl.evaluate import Judge
    from b2diffurl.layout import round_dir
    from b2diffurl.rewards import build_reward
    from b2diffurl.sampler import sample_round
    from b2diffurl.selection import select_round

    before = tf32.tf32_flags()
    seen = {"unet": set(), "clip": set(), "zero_shot": set()}

    def record(name):
        return lambda *_: seen[name].add(tf32.tf32_flags())

    try:
        tiny_config.reward.name = "clipscore"
        assert tiny_config.allow_tf32 is True
        accelerator = cli.make_accelerator(tiny_config)
        assert tf32.tf32_flags() == (True, True)
        pipeline = load_policy(tiny_config, "cpu")
        pipeline.unet.register_forward_pre_hook(record("unet"))
        sample_round(tiny_config, accelerator, pipeline)
        reward = build_reward(tiny_config.reward, "cpu")
        judge = Judge(tiny_config, "cpu")
        for scorer in (reward, judge.clip):
            scorer.model.visual.register_forward_pre_hook(record("clip"))
            scorer.model.transformer.register_forward_pre_hook(record("clip"))
        out = round_dir(tiny_config)
        select_round(tiny_config, reward, out, os.path.dirname(out))
        real = metrics.zero_shot_probs
        metrics.zero_shot_probs = lambda *args: (record("zero_shot")(), real(*args))[1]
        try:
            images = torch.randint(0, 256, (4, 32, 32, 3), dtype=torch.uint8)
            result = judge(images, ["red apple", "red apple", "blue car", "blue car"], 1)
        finally:
            metrics.zero_shot_probs = real
        assert result["inception_score_per_prompt"] >= 1.0
        assert seen == {"unet": {(True, True)}, "clip": {(False, False)}, "zero_shot": {(False, False)}}, seen
        assert tf32.tf32_flags() == (True, True), "restored after scoring"
    finally:
        tf32.set_tf32(False)
        torch.backends.cudnn.allow_tf32 = before[1]
        torch.backends.cuda.matmul.allow_tf32 = before[0]
