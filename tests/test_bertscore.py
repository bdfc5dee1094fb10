"""BERTScore recall (b2diffurl.rewards.bertscore) against hand computations on crafted token embeddings."""

import json
import math

import pytest
import torch

from b2diffurl.rewards.bertscore import greedy_recall


def test_recall_is_the_weighted_mean_of_each_reference_tokens_best_cosine():
    """[CLS]/[SEP] of the reference weigh 0 but the candidate's take part in the maximum; padding is
    left out of the weights and scale does not matter (cosines)."""
    # reference: [CLS], "a", "b", [SEP]; candidate: [CLS], "x", [SEP], padding
    reference = torch.tensor([[[1.0, 0.0], [3.0, 0.0], [1.0, 1.0], [0.0, 1.0]]])  # [1, 4, 2]
    weight = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
    candidate = torch.tensor([[[0.0, 2.0], [1.0, 0.0], [0.0, -1.0], [5.0, 5.0]]])  # [1, 4, 2]
    mask = torch.tensor([[1, 1, 1, 0]])
    # "a" = (1, 0): best is "x", cos 1; "b" = (1, 1)/sqrt 2: best is the candidate's [CLS] or "x", cos 1/sqrt 2
    expected = (1.0 + 1 / math.sqrt(2)) / 2
    assert greedy_recall(reference, weight, candidate, mask).tolist() == pytest.approx([expected], abs=1e-6)
    # with "x" masked out "a" finds nothing above 0, and "b" still finds 1/sqrt 2 at the candidate's [CLS]
    no_x = torch.tensor([[1, 0, 1, 0]])
    assert greedy_recall(reference, weight, candidate, no_x).tolist() == pytest.approx(
        [(0.0 + 1 / math.sqrt(2)) / 2], abs=1e-6
    )


def test_idf_weights_and_padding_at_similarity_zero():
    """Weights other than 1 (idf) weigh the tokens' best cosines; a padded candidate position counts as
    similarity 0, as the bert-score package multiplies by the mask, so a token whose every real cosine
    is negative scores 0 in a padded batch and its best negative cosine without padding. Two pairs in
    one batch score as each alone."""
    reference = torch.tensor([[[-1.0, 0.0], [0.0, 1.0], [2.0, 2.0]]])  # "c", "d", [SEP]
    weight = torch.tensor([[2.0, 1.0, 0.0]])
    candidate = torch.tensor([[[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]])
    # "c": cosines -1 and -1/sqrt 2; "d": 0 and 1/sqrt 2
    padded = greedy_recall(reference, weight, candidate, torch.tensor([[1, 1, 0]]))
    assert padded.tolist() == pytest.approx([(2 * 0.0 + 1 / math.sqrt(2)) / 3], abs=1e-6)
    alone = greedy_recall(reference, weight, candidate[:, :2], torch.tensor([[1, 1]]))
    assert alone.tolist() == pytest.approx([(2 * -1 / math.sqrt(2) + 1 / math.sqrt(2)) / 3], abs=1e-6)
    batch = greedy_recall(
        reference.expand(2, -1, -1),
        weight.expand(2, -1),
        candidate.expand(2, -1, -1),
        torch.tensor([[1, 1, 0], [1, 1, 0]]),
    )
    assert batch.tolist() == pytest.approx(padded.tolist() * 2, abs=1e-6)


def test_the_tiny_text_models_load_as_the_real_ones(tmp_path):
    """b2diffurl.tiny_text writes a DeBERTa and a LLaVA that AutoModel / AutoProcessor and
    LlavaForConditionalGeneration load; the recall keeps the layers it asks for and scores a text
    against itself 1; the captioner answers the same words twice and alone as in a batch."""
    from b2diffurl.rewards.bertscore import Captioner, RecallScorer
    from b2diffurl.tiny_text import build_tiny_text_models

    folder = build_tiny_text_models(str(tmp_path / "text"))
    scorer = RecallScorer(f"{folder}/deberta", layer=3)
    assert len(scorer.model.encoder.layer) == 3
    recall = scorer.recall(
        ["The image contains two blue circles", "two blue circles"], ["The image contains two blue circles"] * 2
    )
    assert recall[0].item() == pytest.approx(1.0, abs=1e-5) and recall[1].item() < 0.99
    with pytest.raises(ValueError, match="bertscore_layer=5 is not a layer"):
        RecallScorer(f"{folder}/deberta", layer=5)
    captioner = Captioner(f"{folder}/llava", max_new_tokens=6, batch_size=4)
    assert captioner.prompt == "USER: <image>\nAnswer concisely: what is going on in this image? ASSISTANT:"
    images = torch.randint(0, 256, (5, 32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    captions = captioner(images)
    assert len(captions) == 5 and all(isinstance(c, str) and c for c in captions)
    assert captioner(images) == captions and captioner(images[3:4]) == captions[3:4]


@pytest.mark.slow
def test_the_bertscore_reward_runs_the_loop_deterministically(tmp_path):
    """CONFIG=config/stage_process.py:tiny,bertscore StageCnt=2 bash run_process.sh, twice: the same
    captions and scores; each score is the recall of its recorded caption against "The image contains
    <prompt>"; selection and training ran on them."""
    from conftest import run_driver

    from b2diffurl.rewards.bertscore import RecallScorer
    from config.stage_process import get_config

    for name in ("first", "again"):
        run_driver(tmp_path, config="config/stage_process.py:tiny,bertscore", StageCnt=2, ExpName=name, OneProcess=1)
    reward = get_config("tiny,bertscore").reward
    scorer = RecallScorer(reward.bertscore_model, reward.bertscore_layer)
    for round_name in ("round_000", "round_001"):
        first, again = (
            json.loads((tmp_path / name / round_name / "scores.json").read_text()) for name in ("first", "again")
        )
        assert first["reward"] == "bertscore" and len(first["captions"]) == len(first["scores"]) == 2 * 8 * 3
        assert first["captions"] == again["captions"] and first["scores"] == again["scores"]
        assert len(set(first["scores"])) > 1 and all(-1 <= s <= 1 for s in first["scores"])
        recomputed = scorer.recall(first["captions"], [f"The image contains {p}" for p in first["prompts"]])
        assert recomputed.tolist() == pytest.approx(first["scores"], abs=1e-5)
        assert len(first["selected"]) > 0 and (tmp_path / "first" / round_name / "train.done").is_file()


def test_evaluations_report_bertscore_when_asked(tiny_config):
    """evaluate.metrics = "bertscore": the judge reports bertscore_mean / _sem and per prompt, the recall
    of each image's caption; with a combined training reward it takes that reward's own bertscore
    part instead of captioning twice. The setting enters the evaluation's settings only when set."""
    from b2diffurl.evaluate import Judge, settings
    from b2diffurl.metrics import mean_and_sem
    from b2diffurl.rewards import build_reward

    images = torch.randint(0, 256, (6, 32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    prompts = ["a red apple"] * 3 + ["a blue cup"] * 3
    tiny_config.reward.name = "clipscore"
    before = settings(tiny_config, "train", prompts)
    tiny_config.evaluate.metrics = "bertscore, clipscore"
    assert "metrics" not in before["evaluate"] and settings(tiny_config, "train", prompts)["evaluate"]["metrics"] == [
        "bertscore"
    ]
    alone = build_reward(_with_name(tiny_config.reward, "bertscore"))(images, prompts)
    result = Judge(tiny_config, "cpu")(images, prompts, 1)
    mean, sem = mean_and_sem(alone)
    assert result["bertscore_mean"] == pytest.approx(mean, abs=1e-6) and result["bertscore_sem"] == pytest.approx(
        sem, abs=1e-6
    )
    assert result["per_prompt"]["a blue cup"]["bertscore"] == pytest.approx(alone[3:].mean().item(), abs=1e-6)
    assert result["reward"] == "clipscore" and "clipscore_mean" in result
    tiny_config.reward.name = "clipscore+0.5*bertscore"
    judge = Judge(tiny_config, "cpu")
    assert judge.metrics == {"bertscore": None}, "the training reward's bertscore part is reused"
    combined = judge(images, prompts, 1)
    assert combined["bertscore_mean"] == pytest.approx(mean, abs=1e-6)
    assert combined["reward_components"]["bertscore"]["mean"] == pytest.approx(mean, abs=1e-6)


def _with_name(reward_config, name):
    copy = reward_config.copy_and_resolve_references()
    copy.name = name
    return copy
