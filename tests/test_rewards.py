"""Rewards: the colour stand-in (exact values) and CLIPScore with the tiny open_clip model (offline)."""

import json
import os

import ml_collections
import pytest
import torch

from b2diffurl.rewards import REWARDS, ClipScore, ColourScore, build_reward, prompt_colour
from b2diffurl.tiny import tiny_clip_paths

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def reward_config(name="colour", batch_size=64, clip_model="", clip_pretrained=""):
    return ml_collections.ConfigDict(
        dict(name=name, clip_model=clip_model, clip_pretrained=clip_pretrained, batch_size=batch_size)
    )


def solid(rgb, size=(8, 6)):
    """uint8 [H, W, 3] image of one colour."""
    return torch.tensor(rgb, dtype=torch.uint8).expand(*size, 3).clone()


def random_images(n, seed=0, size=(40, 56)):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, *size, 3), generator=generator, dtype=torch.uint8)


# ---------------------------------------------------------------- colour


def test_colour_red_image_prefers_red_prompt():
    scorer = ColourScore()
    images = torch.stack([solid((255, 0, 0))] * 2)
    scores = scorer(images, ["red apple", "green apple"])
    assert scores.shape == (2,) and scores.dtype == torch.float32 and scores.device.type == "cpu"
    assert scores[0].item() == pytest.approx(1.0, abs=1e-7)
    assert scores[1].item() < scores[0].item()


def test_colour_exact_values():
    half = solid((0, 0, 0), size=(4, 4))
    half[:, 2:] = 255  # mean (0.5, 0.5, 0.5)
    images = torch.stack(
        [
            solid((255, 0, 0), (4, 4)),
            solid((255, 255, 0), (4, 4)),
            half,
            half,
            solid((51, 51, 51), (4, 4)),
            solid((255, 255, 255), (4, 4)),
        ]
    )
    prompts = ["green apple", "orange mango", "white cat", "black cat", "black cat", "black cat"]
    expected = [
        0.3539957097694446,  # 1 - sqrt(1 + (128/255)^2) / sqrt(3)
        0.7962293167566026,  # 1 - (90/255) / sqrt(3)
        0.5,  # 1 - sqrt(3 * 0.5^2) / sqrt(3)
        0.5,
        0.8,  # grey 0.2: 1 - 0.2 sqrt(3) / sqrt(3)
        0.0,  # white for black: the farthest colour
    ]
    assert ColourScore()(images, prompts).tolist() == pytest.approx(expected, abs=1e-6)


def test_colour_batch_equals_single_and_chunks():
    images = random_images(7, seed=1)
    prompts = [
        "red apple",
        "blue blueberry",
        "pink grapefruit",
        "brown kiwi",
        "purple plum",
        "yellow lime",
        "green pear",
    ]
    batched = ColourScore(batch_size=64)(images, prompts)
    chunked = ColourScore(batch_size=3)(images, prompts)
    single = torch.cat([ColourScore()(images[i : i + 1], prompts[i : i + 1]) for i in range(7)])
    assert torch.equal(batched, chunked)
    assert torch.equal(batched, single)
    assert ((batched >= 0) & (batched <= 1)).all()


def test_colour_resolves_every_template2_prompt():
    with open(os.path.join(REPO, "prompts", "template2_train.json")) as f:
        prompts = json.load(f)
    assert len(prompts) == 40
    for prompt in prompts:
        assert prompt_colour(prompt) == prompt.split()[0]
    assert ColourScore()(random_images(40, size=(4, 4)), prompts).shape == (40,)


def test_colour_word_matching():
    assert prompt_colour("orange orange") == "orange"
    assert prompt_colour("a Red and green apple") == "red"  # first one, any case
    assert prompt_colour("greenish pear, blue sky") == "blue"  # whole words only


@pytest.mark.parametrize("prompt", ["an apple", "greenish pear"])
def test_colour_prompt_without_colour_raises(prompt):
    with pytest.raises(ValueError, match=repr(prompt)):
        ColourScore()(torch.stack([solid((0, 0, 0))] * 2), ["red apple", prompt])


def test_bad_inputs_raise():
    scorer = ColourScore()
    with pytest.raises(ValueError, match="uint8"):
        scorer(torch.zeros(1, 4, 4, 3), ["red apple"])
    with pytest.raises(ValueError, match="2 images but 1 prompts"):
        scorer(torch.zeros(2, 4, 4, 3, dtype=torch.uint8), ["red apple"])


# ---------------------------------------------------------------- clipscore (tiny open_clip)


@pytest.fixture(scope="module")
def clip_paths(tiny_dir):
    config_path, weights_path = tiny_clip_paths(tiny_dir)
    assert os.path.isfile(config_path) and os.path.isfile(weights_path)
    return config_path, weights_path


@pytest.fixture(scope="module")
def clipscore(clip_paths):
    return build_reward(reward_config("clipscore", 64, *clip_paths), "cpu")


def reference_scores(clip_paths, images, prompts):
    """CLIPScore computed directly with open_clip, one image and prompt at a time."""
    import open_clip
    from PIL import Image

    config_path, weights_path = clip_paths
    open_clip.add_model_config(config_path)
    name = os.path.splitext(os.path.basename(config_path))[0]
    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=weights_path)
    model.eval()
    tokenizer = open_clip.get_tokenizer(name)
    scores = []
    with torch.no_grad():
        for image, prompt in zip(images, prompts):
            image_emb = model.encode_image(preprocess(Image.fromarray(image.numpy()))[None])[0]
            text_emb = model.encode_text(tokenizer([prompt]))[0]
            scores.append(torch.dot(image_emb / image_emb.norm(), text_emb / text_emb.norm()).item())
    return torch.tensor(scores)


def test_clipscore_loads_tiny_model_from_json_and_safetensors(clipscore, clip_paths):
    from safetensors.torch import load_file

    assert isinstance(clipscore, ClipScore)
    assert not clipscore.model.training
    saved = load_file(clip_paths[1])
    loaded = clipscore.model.state_dict()
    assert saved.keys() == loaded.keys()
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)


def test_clipscore_matches_open_clip(clipscore, clip_paths):
    images = random_images(5, seed=2)
    prompts = ["red apple", "green apple", "red apple", "purple grape", "a photo of a dog"]
    scores = clipscore(images, prompts)
    assert scores.shape == (5,) and scores.dtype == torch.float32 and scores.device.type == "cpu"
    assert ((scores >= -1) & (scores <= 1)).all()
    torch.testing.assert_close(scores, reference_scores(clip_paths, images, prompts), atol=1e-5, rtol=0)


def test_clipscore_depends_on_prompt_and_image(clipscore):
    images = random_images(2, seed=3)
    same_image = clipscore(images[[0, 0]], ["red apple", "purple grape"])
    same_prompt = clipscore(images, ["red apple", "red apple"])
    assert abs(same_image[0] - same_image[1]) > 1e-4
    assert abs(same_prompt[0] - same_prompt[1]) > 1e-4


def test_clipscore_chunking_determinism_and_position(clip_paths, clipscore):
    images = random_images(6, seed=4)
    images[4] = images[0]
    prompts = ["red apple", "green kiwi", "blue blueberry", "green kiwi", "red apple", "yellow lemon"]
    whole = clipscore(images, prompts)
    chunked = build_reward(reward_config("clipscore", 4, *clip_paths), "cpu")(images, prompts)
    torch.testing.assert_close(chunked, whole, atol=1e-6, rtol=0)
    assert torch.equal(clipscore(images, prompts), whole)
    # image 0 with "red apple" sits at 0 (first chunk) and 4 (second chunk of the chunked scorer)
    assert whole[0].item() == pytest.approx(whole[4].item(), abs=1e-6)
    assert chunked[0].item() == pytest.approx(chunked[4].item(), abs=1e-6)


def test_clipscore_missing_config_json(tmp_path):
    missing = str(tmp_path / "nope.json")
    with pytest.raises(FileNotFoundError, match="nope.json"):
        ClipScore(missing, "", device="cpu")


# ---------------------------------------------------------------- clipscore precision (reward.precision)


def _matmul_weights(module):
    """The conv/linear weights of an open_clip tower: what open_clip's precision casts (layer norms stay fp32)."""
    return [m.weight for m in module.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]


@pytest.mark.parametrize(
    "precision,dtype", [("fp32", torch.float32), ("fp16", torch.float16), ("bf16", torch.bfloat16)]
)
def test_clipscore_precision_reaches_the_model(clip_paths, clipscore, precision, dtype):
    scorer = ClipScore(*clip_paths, device="cpu", precision=precision)
    weights = _matmul_weights(scorer.model.visual)
    assert weights and all(w.dtype == dtype for w in weights)
    assert scorer.model.visual.conv1.weight.dtype == dtype and scorer.dtype == dtype  # pixels go in as dtype
    # (half precision runs on this CPU too; its scores stay near fp32's but are not equal to them)
    images, prompts = random_images(3, seed=6), ["red apple", "green kiwi", "a photo of a dog"]
    scores = scorer(images, prompts)
    assert scores.dtype == torch.float32
    torch.testing.assert_close(scores, clipscore(images, prompts), atol=0 if precision == "fp32" else 2e-2, rtol=0)


def test_clipscore_defaults_to_fp32(clip_paths, clipscore):
    from config.stage_process import get_config

    assert get_config().reward.precision == "fp32"
    assert all(w.dtype == torch.float32 for w in _matmul_weights(ClipScore(*clip_paths).model.visual))
    assert all(w.dtype == torch.float32 for w in _matmul_weights(clipscore.model.visual))  # a config without the field


def test_build_reward_passes_precision(clip_paths):
    from config.stage_process import get_config

    config = get_config("tiny")
    config.reward.name = "clipscore"
    config.reward.clip_model, config.reward.clip_pretrained = clip_paths
    config.reward.precision = "fp16"
    scorer = build_reward(config.reward, "cpu")
    assert isinstance(scorer, ClipScore) and scorer.dtype == torch.float16
    assert all(w.dtype == torch.float16 for w in _matmul_weights(scorer.model.visual))


def test_bad_precision_is_one_line_naming_the_field(tiny_config, clip_paths):
    from b2diffurl.checks import check_config

    tiny_config.reward.name = "clipscore"
    for value in ("fp32", "fp16", "bf16"):
        tiny_config.reward.precision = value
        assert not check_config(tiny_config)[0].problems
    tiny_config.reward.precision = "fp8"
    problems = check_config(tiny_config)[0].problems
    assert [str(p) for p in problems] == [
        "reward.precision='fp8' must be one of fp32, fp16, bf16 "
        "(fp32 keeps close branch scores apart; fp16 is faster on a GPU)"
    ]
    with pytest.raises(ValueError, match="reward.precision='fp8'"):
        ClipScore(*clip_paths, precision="fp8")


def test_every_precision_the_checks_accept_is_a_torch_dtype():
    """reward.precision and reward.caption_precision: each value the checks accept names a torch dtype."""
    from b2diffurl.choices import REWARD_PRECISIONS
    from b2diffurl.rewards import PRECISIONS
    from b2diffurl.rewards.bertscore import caption_dtype

    for precision in REWARD_PRECISIONS:
        assert isinstance(getattr(torch, PRECISIONS[precision]), torch.dtype)
        assert caption_dtype(precision, "cpu") == PRECISIONS[precision]


# ---------------------------------------------------------------- registry


def test_registry_names_and_build():
    assert {"clipscore", "colour"} <= set(REWARDS)
    scorer = build_reward(reward_config("colour", 2), "cpu")
    assert isinstance(scorer, ColourScore) and scorer.batch_size == 2


def test_unknown_reward_one_line_error():
    with pytest.raises(ValueError) as err:
        build_reward(reward_config("foo"), "cpu")
    message = str(err.value)
    assert (
        message == f"reward.name='foo' is not a known reward: choose from {list(REWARDS)}, "
        "or a sum such as 'clipscore+0.5*bertscore'"
    )
    assert "\n" not in message


def test_tiny_preset_reward_builds():
    from config.stage_process import get_config

    config = get_config("tiny")
    scorer = build_reward(config.reward, "cpu")
    assert scorer(torch.stack([solid((255, 0, 0))]), ["red apple"]).tolist() == pytest.approx([1.0])


def test_a_combined_reward_keeps_its_parts_and_selection_follows_the_sum(tiny_config):
    """reward.name = "colour+5*clipscore": scores.json keeps each part's raw score per image (each
    equal to that reward alone) and the weights; the scores are the weighted sum, and normalisation
    and selection follow the sum (not colour alone); the round's summary and progress.csv carry each
    part's mean."""
    from accelerate import Accelerator
    from conftest import run_round

    from b2diffurl import records
    from b2diffurl.driver.books import progress_table
    from b2diffurl.selection import normalize_scores, select_pairs

    tiny_config.reward.name = "colour+5*clipscore"
    out, summary, _, _ = run_round(tiny_config, Accelerator(cpu=True), 0)
    saved = records.read_json(os.path.join(out, "scores.json"))
    parts, prompts = saved["components"], saved["prompts"]
    assert saved["weights"] == {"colour": 1.0, "clipscore": 5.0} and saved["reward"] == "colour+5*clipscore"
    assert saved["scores"] == pytest.approx([c + 5 * k for c, k in zip(parts["colour"], parts["clipscore"])], abs=1e-6)
    marker = records.read_marker(out, "sample")
    images = records.load_images(out, len(prompts), marker)
    assert ColourScore()(images, prompts).tolist() == pytest.approx(parts["colour"], abs=1e-6)
    _, trajectories = records.load_samples(out, marker)
    eval_cfg = tiny_config.eval

    def selection(scores):
        return select_pairs(
            normalize_scores(torch.tensor(scores), prompts, []),
            trajectories.group_ids,
            eval_cfg.pos_threshold,
            eval_cfg.neg_threshold,
        ).tolist()

    assert saved["selected"] == selection(saved["scores"]) != selection(parts["colour"]), (
        "the sum decides, not one part"
    )
    assert summary.reward_components == pytest.approx({k: sum(v) / len(v) for k, v in parts.items()}, abs=1e-6)
    header, row = progress_table(os.path.dirname(out)).splitlines()[:2]
    assert header.startswith(
        "round,run_name,k,split_time,trajectories,reward_queries,reward_mean,reward_std,reward_colour_mean,reward_clipscore_mean,selected"
    )
