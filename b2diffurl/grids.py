"""Image grids that label themselves: a title band (the policy, the prompt set) and each row's prompt
written on the image, so a grid copied out of its run folder still says what it shows."""

import io

TEXT = (20, 20, 20)
BAND = (245, 245, 245)


def _font(size):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 with FreeType: scalable
    except (TypeError, OSError):
        return ImageFont.load_default()


def _fit(draw, text, font, width):
    """``text``, cut with "..." to fit ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def label_grid(grid, rows, title, row_labels):
    """uint8 [H', W, 3]: ``grid`` (uint8 numpy [rows * h, W, 3], ``rows`` rows of images) with a band
    holding ``title`` on top and, above each row, a band holding its label (``row_labels[i]``, the prompt)."""
    import numpy as np

    height = grid.shape[0] // rows
    labelled = [
        titled(grid[i * height : (i + 1) * height], row_labels[i] if i < len(row_labels) else "") for i in range(rows)
    ]
    return titled(np.concatenate(labelled), title)


def titled(image, title):
    """uint8 [H + band, W, 3]: ``image`` (uint8 numpy [H, W, 3]) under a band holding ``title``."""
    import numpy as np
    from PIL import Image, ImageDraw

    width = image.shape[1]
    size = max(10, min(24, width // 48))
    band = size + 6
    out = Image.new("RGB", (width, band + image.shape[0]), BAND)
    draw = ImageDraw.Draw(out)
    font = _font(size)
    draw.text((4, 2), _fit(draw, title, font, width - 8), fill=TEXT, font=font)
    out.paste(Image.fromarray(np.ascontiguousarray(image)), (0, band))
    return np.asarray(out)


def png_bytes(image):
    """uint8 [H, W, 3] -> PNG bytes."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="png")
    return buffer.getvalue()
