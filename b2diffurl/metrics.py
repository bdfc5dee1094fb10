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


def inception_score(probs, splits=1):
    """(mean, std) of exp(E_x KL(p(y|x) || p(y))) over ``splits`` equal consecutive chunks of the rows.

    probs: float Tensor [N, C], each row a class distribution p(y|x). Each chunk holds N // splits
    rows (the last N % splits rows are left out), its own marginal p(y) is its mean row, and its
    score is exp(mean over its rows of sum_y p(y|x) (log p(y|x) - log p(y))), 0 log 0 = 0.
    std is the population std over the chunks (0 for one split), as the original IS code reports.
    """
    n = probs.shape[0]
    if splits < 1 or n < splits:
        raise ValueError(f"inception_score needs 1 <= splits <= N rows; got splits={splits} for {n} rows")
    probs = probs.double()
    size = n // splits
    scores = []
    for i in range(splits):
        part = probs[i * size: (i + 1) * size]  # [size, C]
        marginal = part.mean(dim=0, keepdim=True)  # [1, C]
        kl = (torch.special.xlogy(part, part) - torch.special.xlogy(part, marginal)).sum(dim=1)  # [size]
        scores.append(math.exp(kl.mean().item()))
    scores = torch.tensor(scores, dtype=torch.float64)
    return scores.mean().item(), scores.std(unbiased=False).item()


def mean_and_sem(values):
    """(mean, standard error of the mean) of a 1-D float Tensor: sample std (n - 1) / sqrt(n); 0 for n < 2."""
    values = values.double()
    n = values.numel()
    if n == 0:
        raise ValueError("mean_and_sem of no values")
    sem = values.std().item() / math.sqrt(n) if n > 1 else 0.0
    return values.mean().item(), sem
