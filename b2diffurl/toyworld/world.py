"""The toy world: scenes of coloured shapes on a background, rendered deterministically, with captions.

A scene has objects whose **named** attributes a caption states (colour, shape, count, the left/right
relation of two objects) and **unnamed** ones no caption mentions (background colour, object size,
exact placement): the unnamed ones play the role of the paper's "style", which a naive RL run may
collapse (paper Sec. 1, Fig. 1). Three caption templates mirror the paper's three (object behaviour,
attribute, positional relation):

- template 1, attribute binding: ``a red circle``
- template 2, counting:          ``three blue squares``
- template 3, relation:          ``a red circle left of a green triangle``

Each template's caption set is split into a train and a held-out test list of unseen attribute
combinations (:func:`prompt_lists`). :func:`render` draws a :class:`Scene` as uint8 RGB [S, S, 3],
anti-aliased by supersampling, the same bytes for the same scene on any machine.
"""

import itertools
import re
from dataclasses import dataclass, field

import numpy as np

# Object colours (named in captions), RGB 0..255: far apart, so a colour is unambiguous at 32 x 32.
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (50, 80, 230),
    "yellow": (235, 215, 40),
    "purple": (150, 60, 190),
}
SHAPES = ("circle", "square", "triangle")
COUNTS = {"one": 1, "two": 2, "three": 3}
RELATIONS = ("left of", "right of")
# Unnamed attributes: the background (greys and pastels, none close to an object colour) and size.
BACKGROUNDS = {
    "white": (245, 245, 245),
    "light grey": (200, 200, 200),
    "dark grey": (70, 70, 70),
    "black": (15, 15, 15),
    "cream": (240, 230, 200),
    "sky": (190, 220, 240),
}
SIZES = {"small": 0.16, "large": 0.26}  # object radius as a fraction of the image side
SUPERSAMPLE = 4


@dataclass(frozen=True)
class Object:
    """One shape: its colour and shape (named), its centre (x, y in 0..1, y down) and radius (unnamed)."""

    shape: str
    colour: str
    x: float
    y: float
    radius: float


@dataclass(frozen=True)
class Scene:
    """What an image shows: objects on a background (its name in :data:`BACKGROUNDS`)."""

    objects: tuple
    background: str
    caption: str = field(default="", compare=False)


# ---------------------------------------------------------------- captions


def plural(shape):
    return shape + "s"


def caption_template1(colour, shape):
    return f"a {colour} {shape}"


def caption_template2(count, colour, shape):
    return f"{count} {colour} {shape if COUNTS[count] == 1 else plural(shape)}"


def caption_template3(colour1, shape1, relation, colour2, shape2):
    return f"a {colour1} {shape1} {relation} a {colour2} {shape2}"


_SINGLE = re.compile(rf"^a ({'|'.join(COLOURS)}) ({'|'.join(SHAPES)})$")
_COUNT = re.compile(rf"^({'|'.join(COUNTS)}) ({'|'.join(COLOURS)}) ({'|'.join(SHAPES)})s?$")
_RELATION = re.compile(
    rf"^a ({'|'.join(COLOURS)}) ({'|'.join(SHAPES)}) ({'|'.join(RELATIONS)}) "
    rf"a ({'|'.join(COLOURS)}) ({'|'.join(SHAPES)})$"
)


def parse(caption):
    """What a caption asks for: ``(groups, relation)`` with groups a list of (count, colour, shape) and
    relation "left of" / "right of" between groups[0] and groups[1] (None for one group).
    Raises ValueError for a caption of no template."""
    if match := _SINGLE.match(caption):
        return [(1, match.group(1), match.group(2))], None
    if match := _COUNT.match(caption):
        return [(COUNTS[match.group(1)], match.group(2), match.group(3))], None
    if match := _RELATION.match(caption):
        c1, s1, relation, c2, s2 = match.groups()
        return [(1, c1, s1), (1, c2, s2)], relation
    raise ValueError(f"caption {caption!r} follows none of the toy world's three templates")


def meaning(caption):
    """The caption's canonical form: two captions with the same meaning (``a red circle left of a blue
    square`` and ``a blue square right of a red circle``) have the same one. A scene shows both or neither."""
    groups, relation = parse(caption)
    if relation == "right of":
        (_, c1, s1), (_, c2, s2) = groups
        return caption_template3(c2, s2, "left of", c1, s1)
    return caption


def all_captions(template):
    """Every caption of a template (1, 2 or 3), in a fixed order."""
    if template == 1:
        return [caption_template1(c, s) for c, s in itertools.product(COLOURS, SHAPES)]
    if template == 2:
        return [caption_template2(n, c, s) for n, c, s in itertools.product(COUNTS, COLOURS, SHAPES)]
    if template == 3:
        return [
            caption_template3(c1, s1, r, c2, s2)
            for c1, s1, r, c2, s2 in itertools.product(COLOURS, SHAPES, RELATIONS, COLOURS, SHAPES)
            if (c1, s1) != (c2, s2)
        ]
    raise ValueError(f"template {template} is not 1, 2 or 3")


def _held_out(template, caption):
    """Whether a caption is in the held-out test list: unseen combinations, chosen by a fixed rule so
    every colour, shape, count and relation still appears in training.

    template 1: the (colour, shape) pairs on one diagonal of the 5 x 3 grid (colour index - shape index = 0 mod 3)
    template 2: the (count, colour, shape) triples with (count + colour + shape index) % 3 == 0 and count > 1
    template 3: the captions whose first object is a (colour, shape) pair held out in template 1
    """
    groups, _ = parse(caption)
    colours, shapes, counts = list(COLOURS), list(SHAPES), list(COUNTS.values())
    if template == 1:
        _, colour, shape = groups[0]
        return (colours.index(colour) - shapes.index(shape)) % 3 == 0
    if template == 2:
        count, colour, shape = groups[0]
        return count > 1 and (counts.index(count) + colours.index(colour) + shapes.index(shape)) % 3 == 0
    _, colour, shape = groups[0]
    return _held_out(1, caption_template1(colour, shape))


def prompt_lists(template):
    """(train captions, held-out test captions) of a template; disjoint, together all of them."""
    captions = all_captions(template)
    test = [c for c in captions if _held_out(template, c)]
    return [c for c in captions if c not in set(test)], test


# ---------------------------------------------------------------- scenes


def _free_positions(rng, n, radius, xs_order=None, tries=2000):
    """n object centres (x, y) in 0..1 that keep the objects inside the image and apart (a clear gap
    of at least half a radius between any two, so objects never touch)."""
    for _ in range(tries):
        points = rng.uniform(radius, 1 - radius, size=(n, 2))
        if xs_order == "increasing":
            points = points[np.argsort(points[:, 0])]
        apart = all(np.hypot(*(points[i] - points[j])) > 2.5 * radius for i in range(n) for j in range(i))
        far_x = xs_order is None or np.all(np.diff(points[:, 0]) > radius)
        if apart and far_x:
            return points
    raise RuntimeError(f"no room for {n} objects of radius {radius}")


def sample_scene(caption, rng):
    """A random scene showing ``caption``: its named attributes as stated, the unnamed ones
    (background, size, placement) drawn from ``rng`` (a numpy Generator)."""
    groups, relation = parse(caption)
    background = list(BACKGROUNDS)[rng.integers(len(BACKGROUNDS))]
    radius = SIZES[list(SIZES)[rng.integers(len(SIZES))]] * rng.uniform(0.9, 1.1)
    n = sum(count for count, _, _ in groups)
    if n > 1:
        radius = min(radius, {2: 0.18, 3: 0.15}[n])  # two or three objects must fit apart
    points = _free_positions(rng, n, radius, xs_order="increasing" if relation else None)
    if relation == "right of":
        points = points[::-1]  # the first-named object gets the larger x
    objects, k = [], 0
    for count, colour, shape in groups:
        for _ in range(count):
            objects.append(Object(shape, colour, float(points[k][0]), float(points[k][1]), float(radius)))
            k += 1
    return Scene(tuple(objects), background, caption)


# ---------------------------------------------------------------- rendering


def _shape_mask(obj, grid_x, grid_y):
    """Boolean mask [N, N] of an object over pixel-centre coordinates in 0..1."""
    dx, dy = grid_x - obj.x, grid_y - obj.y
    r = obj.radius
    if obj.shape == "circle":
        return dx**2 + dy**2 <= r**2
    if obj.shape == "square":
        half = r * 0.85  # about the circle's area
        return (np.abs(dx) <= half) & (np.abs(dy) <= half)
    # an upright triangle: apex at the top, base at the bottom, inside the circle of radius r
    top, bottom = -r, 0.6 * r
    inside_y = (dy >= top) & (dy <= bottom)
    half_width = (dy - top) / (bottom - top) * r
    return inside_y & (np.abs(dx) <= half_width)


def render(scene, size=32):
    """uint8 RGB [size, size, 3] of a scene: objects painted in order over the background,
    anti-aliased by averaging a SUPERSAMPLE x SUPERSAMPLE grid of samples per pixel."""
    n = size * SUPERSAMPLE
    centres = (np.arange(n) + 0.5) / n
    grid_x, grid_y = np.meshgrid(centres, centres)
    canvas = np.empty((n, n, 3), dtype=np.float64)
    canvas[:] = BACKGROUNDS[scene.background]
    for obj in scene.objects:
        canvas[_shape_mask(obj, grid_x, grid_y)] = COLOURS[obj.colour]
    pixels = canvas.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE, 3).mean(axis=(1, 3))
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def shows(scene, caption):
    """Ground truth: whether a scene shows exactly what ``caption`` asks (counts of each (colour, shape),
    nothing else, and the left/right order of a relation's two objects)."""
    groups, relation = parse(caption)
    wanted = {(colour, shape): count for count, colour, shape in groups}
    present = {}
    for obj in scene.objects:
        present[(obj.colour, obj.shape)] = present.get((obj.colour, obj.shape), 0) + 1
    if present != wanted:
        return False
    if relation is None:
        return True
    (_, c1, s1), (_, c2, s2) = groups
    first = next(o for o in scene.objects if (o.colour, o.shape) == (c1, s1))
    second = next(o for o in scene.objects if (o.colour, o.shape) == (c2, s2))
    return first.x < second.x if relation == "left of" else first.x > second.x
