"""What is measured: the numbers taken from an evaluation, each with the run's own standard error."""

from dataclasses import dataclass

SET_NAMES = {"train": "training prompts", "test": "held-out prompts"}


@dataclass(frozen=True)
class Metric:
    """One number of an evaluation. ``value(evaluation)`` -> (value, own SE or None), or None when absent."""

    key: str  # in file names: curve_<set>_<key>, table_toy_<key>_<set>
    name: str  # in titles, captions and axis labels
    json_key: str  # the evaluation JSON's key, for notes
    value: object  # callable: Evaluation -> tuple[float, float | None] | None


def _pair(value, se):
    return None if value is None else (value, se)


CLIPSCORE = Metric("clipscore", "CLIPScore", "clipscore_mean", lambda e: (e.clipscore, e.clipscore_sem))
IS_PER_PROMPT = Metric(
    "inception_score_per_prompt",
    "per-prompt Inception Score",
    "inception_score_per_prompt",
    lambda e: _pair(e.inception_pp, e.inception_pp_sem),
)
IS_POOLED = Metric(
    "inception_score", "pooled Inception Score", "inception_score", lambda e: _pair(e.inception, e.inception_se)
)
ALIGNMENT = Metric(
    "alignment", "alignment (toy-world detector)", "alignment_mean", lambda e: _pair(e.alignment, e.alignment_sem)
)
BACKGROUND_ENTROPY = Metric(
    "background_entropy",
    "background entropy (bits, diversity)",
    "background_entropy",
    lambda e: _pair(e.background_entropy, None),
)
TOY_METRICS = (ALIGNMENT, BACKGROUND_ENTROPY)
BERTSCORE = Metric("bertscore", "BERTScore", "bertscore_mean", lambda e: _pair(e.bertscore, e.bertscore_sem))
TOYCAPTION = Metric(
    "toycaption",
    "toy captioning score (BERTScore's stand-in)",
    "toycaption_mean",
    lambda e: _pair(e.toycaption, e.toycaption_sem),
)
CAPTION_METRICS = (BERTSCORE, TOYCAPTION)  # Fig. 7a's second panel: the first one the runs carry


def prompts_name(prompt_set):
    """ "training prompts" / "held-out prompts" (or "<set> prompts") for titles and captions."""
    return SET_NAMES.get(prompt_set, f"{prompt_set} prompts")
