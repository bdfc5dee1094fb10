"""An alignment metric independent of the reward: detect the objects of a toy-world image by colour.

No learned model: each object colour's pixels (RGB distance below :data:`COLOUR_TOLERANCE`) are split
into 4-connected blobs; a blob of at least :data:`MIN_AREA` of the image is an object, its shape read
from its pixel distribution (:func:`shape_of`) and its position from its centroid. :func:`aligned` then
applies the renderer's own ground-truth rule (:func:`b2diffurl.toyworld.world.shows`) to what was
detected. Its accuracy on rendered images is pinned by tests/test_toyworld.py.
"""

import numpy as np

from b2diffurl.toyworld.world import COLOURS, Object, Scene, shows

COLOUR_TOLERANCE = 60.0  # RGB distance (0..441) within which a pixel has an object colour
MIN_AREA = 0.01  # smallest blob, as a fraction of the image (10 pixels at 32 x 32)
SQUARE_CORNERS = -0.2  # 4-fold moment below which a blob is a square rather than a circle (see shape_of)


def _blobs(mask):
    """4-connected components of a boolean mask [H, W]: a list of (ys, xs) index arrays."""
    seen = np.zeros_like(mask)
    blobs = []
    height, width = mask.shape
    for y0, x0 in zip(*np.nonzero(mask)):
        if seen[y0, x0]:
            continue
        stack, ys, xs = [(y0, x0)], [], []
        seen[y0, x0] = True
        while stack:
            y, x = stack.pop()
            ys.append(y)
            xs.append(x)
            for ny, nx in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
                if 0 <= ny < height and 0 <= nx < width and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    stack.append((ny, nx))
        blobs.append((np.array(ys), np.array(xs)))
    return blobs


def corner_moment(ys, xs):
    """sum r^4 cos(4 theta) / sum r^4 over a blob's pixels (polar coordinates about its centroid):
    about -0.45 for an axis-aligned square (its far pixels lie on the diagonals), about 0 for a disc.
    Unlike the bounding-box fill it survives the soft, rounded corners of decoded images."""
    dy, dx = ys - ys.mean(), xs - xs.mean()
    r4 = (dx**2 + dy**2) ** 2
    return float((r4 * np.cos(4 * np.arctan2(dy, dx))).sum() / max(r4.sum(), 1e-12))


def shape_of(ys, xs):
    """circle, square or triangle of a blob (pixel index arrays). An upright triangle has far fewer
    pixels in the top third of its bounding box than in the bottom third; a square's
    :func:`corner_moment` is below SQUARE_CORNERS, a circle's near 0."""
    top, bottom = ys.min(), ys.max()
    third = (bottom - top + 1) / 3
    upper, lower = (ys < top + third).sum(), (ys > bottom - third).sum()
    if upper < 0.6 * lower:
        return "triangle"
    return "square" if corner_moment(ys, xs) < SQUARE_CORNERS else "circle"


def detect(image):
    """The objects seen in a uint8 RGB image [H, W, 3], as a :class:`Scene` (background unknown: "")."""
    height, width, _ = image.shape
    pixels = image.astype(np.float64)
    objects = []
    for name, rgb in COLOURS.items():
        mask = np.linalg.norm(pixels - np.array(rgb, dtype=np.float64), axis=2) < COLOUR_TOLERANCE
        for ys, xs in _blobs(mask):
            if len(ys) >= MIN_AREA * height * width:
                radius = 0.5 * max(np.ptp(ys) + 1, np.ptp(xs) + 1) / width
                objects.append(
                    Object(shape_of(ys, xs), name, (xs.mean() + 0.5) / width, (ys.mean() + 0.5) / height, radius)
                )
    return Scene(tuple(objects), "")


def aligned(image, caption):
    """Whether an image shows exactly what ``caption`` asks, as far as :func:`detect` sees."""
    return shows(detect(image), caption)
