"""Evaluation metrics: mean and standard error, and the Inception Score computed with CLIP (paper App. F.2).

Inception Score (Salimans et al. 2016; the paper's Eq. 9):

    IS = exp( E_x [ KL( p(y|x) || p(y) ) ] ),   p(y) = E_x [ p(y|x) ]

The paper replaces Inception v3 by the image encoder of CLIP, since SD's images lie far outside
ImageNet photos. Here p(y|x) is CLIP's zero-shot classifier over a label set:
p(y|x) = softmax_y(logit_scale * cos(image embedding of x, text embedding of "a photo of a {label}.")),
with the CLIP model that scores the reward (ViT-H-14 in the paper setup) and its own learned
``logit_scale``. The label set is the 1000 ImageNet-1k class names (open_clip's
``IMAGENET_CLASSNAMES``, the names CLIP's zero-shot ImageNet evaluation uses), with the single
template "a photo of a {}.". A higher IS = more diverse images (between 1 and the number of labels).
"""

import math

import torch

LABEL_TEMPLATE = "a photo of a {}."


def label_set(name):
    """The class names of a label set; only ``imagenet-1k`` (1000 names) is built in."""
    if name != "imagenet-1k":
        raise ValueError(f"label set {name!r} is not known; use 'imagenet-1k'")
    from open_clip import IMAGENET_CLASSNAMES

    return list(IMAGENET_CLASSNAMES)


def zero_shot_probs(image_features, label_features, logit_scale):
    """p(y|x) [N, C] = softmax(logit_scale * image_features @ label_features.T).

    image_features: [N, D], label_features: [C, D], both L2-normalised; logit_scale: CLIP's learned
    temperature (exp of the model's ``logit_scale`` parameter, 100 for trained CLIP models).
    """
    return torch.softmax(logit_scale * image_features.float() @ label_features.float().T, dim=-1)


def _inception_score_of(probs):
    """exp(mean over rows of KL(p(y|x) || p(y))) with p(y) the mean row; probs: float64 [n, C], 0 log 0 = 0."""
    marginal = probs.mean(dim=0, keepdim=True)  # [1, C]
    kl = (torch.special.xlogy(probs, probs) - torch.special.xlogy(probs, marginal)).sum(dim=1)  # [n]
    return math.exp(kl.mean().item())


def inception_score(probs, splits=1):
    """(mean, std) of the pooled IS over ``splits`` consecutive chunks of the rows.

    probs: float Tensor [N, C], each row a class distribution p(y|x). The N rows are cut into
    ``splits`` consecutive chunks whose sizes differ by at most one (the first N % splits chunks hold
    one row more; no row is left out). Each chunk's marginal p(y) is its mean row and its score is
    exp(mean over its rows of sum_y p(y|x) (log p(y|x) - log p(y))), 0 log 0 = 0. std is the population
    std over the chunks (0 for one split), as the original IS code reports.
    """
    n = probs.shape[0]
    if splits < 1 or n < splits:
        raise ValueError(f"inception_score needs 1 <= splits <= N rows; got splits={splits} for {n} rows")
    scores = torch.tensor(
        [_inception_score_of(part) for part in probs.double().tensor_split(splits)], dtype=torch.float64
    )
    return scores.mean().item(), scores.std(unbiased=False).item()


def per_prompt_inception_score(probs, prompt_ids):
    """(mean, sem) over prompts of the IS computed within each prompt's images.

    probs: float Tensor [N, C], row i the class distribution p(y|x_i); prompt_ids: LongTensor [N], the
    prompt of each row (any values, any order). For every prompt with at least 2 images, p(y) is the
    mean row of that prompt's images and its IS is exp(mean over them of KL(p(y|x) || p(y))): 1 when the
    prompt's images are classified alike, up to min(images, C) when each lands on its own class.
    It measures diversity *within* a prompt (the style collapse the paper reports), unlike the pooled
    :func:`inception_score`, whose marginal mixes different subjects. Prompts with one image (IS 1 by
    definition) are left out. Returns the mean over the P scored prompts and its standard error
    (sample std with n - 1 / sqrt(P); 0 for P = 1). A ValueError when no prompt has 2 images.
    """
    if probs.shape[0] != prompt_ids.shape[0]:
        raise ValueError(f"per_prompt_inception_score: {probs.shape[0]} rows but {prompt_ids.shape[0]} prompt ids")
    probs = probs.double()
    _, inverse, counts = torch.unique(prompt_ids, return_inverse=True, return_counts=True)  # [N], [P]
    if not (counts >= 2).any():
        raise ValueError("per_prompt_inception_score needs a prompt with at least 2 images")
    marginals = (
        torch.zeros(len(counts), probs.shape[1], dtype=torch.float64).index_add(0, inverse, probs) / counts[:, None]
    )  # [P, C]
    kl = (torch.special.xlogy(probs, probs) - torch.special.xlogy(probs, marginals[inverse])).sum(dim=1)  # [N]
    mean_kl = torch.zeros(len(counts), dtype=torch.float64).index_add(0, inverse, kl) / counts  # [P]
    scores = mean_kl[counts >= 2].exp()  # [P'] the IS of each prompt with 2+ images
    return mean_and_sem(scores)


def mean_and_sem(values):
    """(mean, standard error of the mean) of a 1-D float Tensor: sample std (n - 1) / sqrt(n); 0 for n < 2.

    :func:`b2diffurl.stats.mean_se` is the same rule for plain numbers; this one keeps torch's own
    reductions (float64 mean and std), whose digits every evaluation JSON records."""
    values = values.double()
    n = values.numel()
    if n == 0:
        raise ValueError("mean_and_sem of no values")
    sem = values.std().item() / math.sqrt(n) if n > 1 else 0.0
    return values.mean().item(), sem
