"""The Judge: the evaluation's scorers and the numbers of its JSON (CLIPScore, the two Inception Scores,
the training reward, ``evaluate.metrics``, per-prompt means), and the check that none is NaN or infinite."""

import math

from b2diffurl.errors import NonFiniteError
from b2diffurl.evaluate.plan import metric_names

CHECKED = ("clipscore_mean", "inception_score", "inception_score_per_prompt", "reward_mean")


class Judge:
    """The evaluation's models, loaded once per process: CLIP (CLIPScore and the IS classifier), the
    ImageNet label embeddings, the training reward when it is not CLIPScore, and the scorers of
    ``evaluate.metrics`` that the training reward does not already compute."""

    def __init__(self, config, device):
        from b2diffurl.metrics import LABEL_TEMPLATE, label_set
        from b2diffurl.rewards import REWARDS, ClipScore, build_reward

        reward = config.reward
        self.clip = ClipScore(
            reward.clip_model, reward.clip_pretrained, reward.batch_size, device, reward.get("precision", "fp32")
        )
        self.labels = self.clip.embed_texts(
            [LABEL_TEMPLATE.format(name) for name in label_set("imagenet-1k")]
        )  # [1000, D]
        self.reward_name = reward.name
        self.reward = None if reward.name == "clipscore" else build_reward(reward, device)
        self.alignment = config.evaluate.get("alignment", "")
        own = {reward.name} | set(getattr(self.reward, "names", ()))  # scores the training reward gives anyway
        # {name: scorer, or None to take the training reward's scores}
        self.metrics = {name: None if name in own else REWARDS[name](reward, device) for name in metric_names(config)}

    def __call__(self, images, prompts, is_splits):
        """Scores of images [N, H, W, 3] (uint8) with their N prompts: a dict of the JSON's metric keys.
        CLIP runs without TF32 here (b2diffurl.tf32.full_precision), the zero-shot matmul included."""
        from b2diffurl.tf32 import full_precision

        with full_precision():
            return self._scores(images, prompts, is_splits)

    def _scores(self, images, prompts, is_splits):
        from b2diffurl.metrics import mean_and_sem

        features = self.clip.embed_images(images)  # [N, D]
        clipscores = self.clip.scores_from_features(features, prompts)  # [N]
        rewards = clipscores if self.reward is None else self.reward(images, prompts)
        per_prompt_is, per_prompt_is_sem, is_mean, is_std = self._inception_scores(features, prompts, is_splits)
        mean, sem = mean_and_sem(clipscores)
        reward_mean, reward_sem = mean_and_sem(rewards)
        components = self._components()
        metrics = self._metric_scores(images, prompts, rewards)
        per_prompt = per_prompt_means(prompts, {"clipscore": clipscores, "reward": rewards, **metrics})
        extra = self._alignment(images, prompts, per_prompt)
        return {
            "clipscore_mean": mean,
            "clipscore_sem": sem,
            "clipscore_std": clipscores.double().std().item() if len(clipscores) > 1 else 0.0,
            "inception_score_per_prompt": per_prompt_is,
            "inception_score_per_prompt_sem": per_prompt_is_sem,
            "inception_score": is_mean,
            "inception_score_std": is_std,
            "is_splits": is_splits,
            "is_label_set": "imagenet-1k",
            "reward": self.reward_name,
            "reward_mean": reward_mean,
            "reward_sem": reward_sem,
            **({"reward_components": components} if components else {}),
            **{
                f"{name}_{key}": value
                for name, scores in metrics.items()
                for key, value in zip(("mean", "sem"), mean_and_sem(scores))
            },
            **extra,
            "per_prompt": per_prompt,
        }

    def _inception_scores(self, features, prompts, is_splits):
        """(per-prompt IS, its sem over prompts, pooled IS, its std over the ``is_splits`` chunks)."""
        import torch

        from b2diffurl.metrics import inception_score, per_prompt_inception_score, zero_shot_probs

        probs = zero_shot_probs(features, self.labels, self.clip.logit_scale).cpu()  # [N, 1000]
        index = {p: i for i, p in enumerate(dict.fromkeys(prompts))}
        prompt_ids = torch.tensor([index[p] for p in prompts])  # [N]
        per_prompt_is, per_prompt_is_sem = per_prompt_inception_score(probs, prompt_ids)
        # images come in prompt order: a fixed shuffle makes every pooled-IS chunk a mix of all prompts
        # (a chunk of a few prompts would see a narrow p(y) and score low for that reason alone)
        order = torch.randperm(len(probs), generator=torch.Generator().manual_seed(0))
        is_mean, is_std = inception_score(probs[order], is_splits)
        return per_prompt_is, per_prompt_is_sem, is_mean, is_std

    def _components(self):
        """A combined reward's parts: {name: {"mean", "sem"}} of their raw scores of the last call."""
        from b2diffurl.metrics import mean_and_sem

        return {
            name: dict(zip(("mean", "sem"), mean_and_sem(scores)))
            for name, scores in getattr(self.reward, "last", {}).items()
        }

    def _metric_scores(self, images, prompts, rewards):
        """evaluate.metrics: {name: [N]}, from their own scorers or from the training reward's scores."""
        metrics = {}
        for name, scorer in self.metrics.items():
            if scorer is not None:
                metrics[name] = scorer(images, prompts)
            else:
                metrics[name] = rewards if name == self.reward_name else self.reward.last[name]
        return metrics

    def _alignment(self, images, prompts, per_prompt):
        """The toy world's detector (evaluate.alignment = toyworld): alignment and diversity keys, each
        prompt's alignment written into ``per_prompt``; {} otherwise."""
        if self.alignment != "toyworld":
            return {}
        from b2diffurl.toyworld.score import toy_metrics

        extra = toy_metrics(images.cpu().numpy(), prompts)
        for p, value in extra.pop("per_prompt_alignment").items():
            per_prompt[p]["alignment"] = value
        extra["alignment"] = self.alignment
        return extra


def per_prompt_means(prompts, scores):
    """{prompt: {key: mean}} of ``scores`` ({key: [N]}, in key order) over each prompt's images."""
    per_prompt = {}
    for i, prompt in enumerate(prompts):
        entry = per_prompt.setdefault(prompt, {key: [] for key in scores})
        for key, values in scores.items():
            entry[key].append(values[i].item())
    return {p: {k: sum(v) / len(v) for k, v in entry.items()} for p, entry in per_prompt.items()}


def check_finite(scores, what):
    """NonFiniteError (one line, exit 3) naming the first of the Judge's numbers (``scores``: its dict)
    that is NaN or infinite: CLIPScore, the Inception Scores, the reward's mean, then every other
    ``<name>_mean`` (evaluate.metrics, the reward's components), before anything is written."""
    for key in [*CHECKED, *sorted(k for k in scores if k.endswith("_mean") and k not in CHECKED)]:
        if isinstance(scores[key], (int, float)) and not math.isfinite(scores[key]):
            raise NonFiniteError(f"{what}: {key} is {scores[key]}: check the images in the grid and the reward model")
