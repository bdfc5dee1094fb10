"""Checkpoints read and written one tensor at a time (b2diffurl.weights): the format, the loads equal
to open_clip's own, and the memory of a ViT-H-14 load."""

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO


def test_written_safetensors_read_back_with_the_library_and_stream_into_a_model(tmp_path):
    from safetensors.torch import load_file

    from b2diffurl.weights import no_random_init, stream_into, write_safetensors

    source = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2, bias=False))
    source.register_buffer("scale", torch.tensor(2.5))  # a 0-d tensor
    state = {k: v.to(torch.bfloat16) if k == "0.weight" else v for k, v in source.state_dict().items()}
    path = str(tmp_path / "m.safetensors")
    write_safetensors(
        path, lambda real: ((k, v if real else v.to("meta")) for k, v in state.items()), metadata={"format": "pt"}
    )
    loaded = load_file(path)
    assert loaded.keys() == state.keys() and all(
        torch.equal(loaded[k], state[k]) and loaded[k].dtype == state[k].dtype for k in state
    )

    with no_random_init():
        target = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2, bias=False))
    target.register_buffer("scale", torch.tensor(0.0))
    assert stream_into(target, path) is None
    for k, v in target.state_dict().items():
        assert v.dtype == torch.float32 and torch.equal(v, state[k].float()), k
    assert torch.nn.init.normal_(torch.zeros(1000)).std() > 0.5, "the fillers are back after the block"

    smaller = torch.nn.Sequential(torch.nn.Linear(3, 4))
    assert "keys differ" in stream_into(smaller, path)
    other = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2, bias=False))
    other.register_buffer("scale", torch.tensor(0.0))
    assert stream_into(other, path).startswith("0.weight: shape (4, 3) in the checkpoint, (5, 3) in the model")
    assert stream_into(target, str(tmp_path / "m.bin")).startswith("not a .safetensors file"), (
        "pickles are left to their library"
    )


def test_the_toy_clip_loads_exactly_as_open_clip_loads_it():
    """ClipScore's tensor-by-tensor load of the toy world's CLIP: every parameter and buffer (the causal
    mask built, not loaded) and the eval transform equal to open_clip's own load."""
    import open_clip

    from b2diffurl.rewards.clipscore import ClipScore
    from config.stage_process import get_config

    reward = get_config("toy").reward
    ours = ClipScore(reward.clip_model, reward.clip_pretrained)
    name = os.path.splitext(os.path.basename(reward.clip_model))[0]
    theirs, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=reward.clip_pretrained)
    mine, ref = (
        dict(ours.model.named_buffers()) | ours.model.state_dict(),
        dict(theirs.named_buffers()) | theirs.state_dict(),
    )
    assert mine.keys() == ref.keys() and "attn_mask" in mine
    assert all(torch.equal(mine[k], ref[k]) for k in ref)
    assert str(ours.preprocess) == str(preprocess)


MEASURE = """
import json, resource, sys
import open_clip, torch
from b2diffurl.rewards.clipscore import ClipScore
rss = lambda: int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1]) * 1024
before = rss()
model = ClipScore("ViT-H-14", sys.argv[1]).model
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
weights = sum(v.numel() * v.element_size() for v in model.state_dict().values())
print(json.dumps({"before": before, "peak": peak, "weights": weights}))
"""


@pytest.mark.slow
def test_a_vit_h_14_reward_loads_in_at_most_1_2x_its_weights(tmp_path):
    """The paper's reward model at full size (986 M parameters, random, an fp16 .safetensors as the
    benchmark builds it), loaded by ClipScore in fp32 on the CPU: the process's peak RSS grows by at
    most 1.2x the model's bytes (open_clip's own load: about 1.5x with this file, the random model and
    the whole checkpoint at once)."""
    from b2diffurl.bench.models import write_random_open_clip

    path = str(tmp_path / "vit_h_14.safetensors")
    assert write_random_open_clip(path) == os.path.getsize(path) - 8 - int.from_bytes(
        open(path, "rb").read(8), "little"
    )
    proc = subprocess.run(
        [sys.executable, "-c", MEASURE, path],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": REPO},
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = json.loads(proc.stdout.strip().splitlines()[-1])
    assert m["weights"] == 986_109_441 * 4, "ViT-H-14's parameters in fp32"
    assert m["peak"] - m["before"] <= 1.2 * m["weights"], (
        f"peak grew by {(m['peak'] - m['before']) / m['weights']:.2f}x the weights"
    )
