"""The embedded demo dataset: seeded procedural images with class labels and domains.

Each image shows one shape (the class: disc, square, triangle, cross) on a background
whose style is the domain (light gradient, dark gradient, striped paper). Position, size,
rotation, colours and the background vary per image. Shapes are drawn at 4x the target
resolution and downsampled with a box filter, so edges are anti-aliased like real photos.
Everything computed on it is labelled "procedural demo data" in every output.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

CLASS_NAMES = ("disc", "square", "triangle", "cross")
DOMAIN_NAMES = ("light", "dark", "stripes")
SUPERSAMPLE = 4


def generate_shapes(
    count: int, resolution: int, classes: int = 3, domains: int = 2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``count`` NHWC uint8 images with their class and domain indices.

    Classes and domains are balanced (index i gets class ``i % classes`` and domain
    ``(i // classes) % domains``); every other attribute is drawn from ``seed``.
    """
    if not 1 <= classes <= len(CLASS_NAMES):
        raise ValueError(f"classes must be in 1..{len(CLASS_NAMES)}, got {classes}")
    if not 1 <= domains <= len(DOMAIN_NAMES):
        raise ValueError(f"domains must be in 1..{len(DOMAIN_NAMES)}, got {domains}")
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % classes
    domain_ids = (np.arange(count) // classes) % domains
    images = np.stack(
        [_render(int(c), int(d), resolution, rng) for c, d in zip(labels, domain_ids, strict=True)]
    )
    return images, labels.astype(np.int64), domain_ids.astype(np.int64)


def _render(shape: int, domain: int, resolution: int, rng: np.random.Generator) -> np.ndarray:
    size = resolution * SUPERSAMPLE
    canvas = Image.fromarray(_background(domain, size, rng))
    draw = ImageDraw.Draw(canvas)
    radius = size * rng.uniform(0.18, 0.32)
    centre = rng.uniform(radius + 1, size - radius - 1, size=2)
    angle = rng.uniform(0, 2 * math.pi)
    hue = rng.uniform(0, 1)
    fill = _hsv_to_rgb(hue, 0.75 if domain != 1 else 0.55, 0.85 if domain != 1 else 1.0)
    outline = tuple(int(v * 0.45) for v in fill)
    width = max(1, size // 40)
    if shape == 0:
        box = [centre[0] - radius, centre[1] - radius, centre[0] + radius, centre[1] + radius]
        draw.ellipse(box, fill=fill, outline=outline, width=width)
    else:
        draw.polygon(
            _polygon(shape, centre, radius, angle), fill=fill, outline=outline, width=width
        )
    small = canvas.resize((resolution, resolution), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.uint8)


def _polygon(shape: int, centre: np.ndarray, radius: float, angle: float) -> list[tuple]:
    if shape == 1:  # square
        corners = [angle + math.pi / 4 + k * math.pi / 2 for k in range(4)]
        return [_polar(centre, radius, a) for a in corners]
    if shape == 2:  # triangle
        return [_polar(centre, radius, angle + k * 2 * math.pi / 3) for k in range(3)]
    # cross: twelve corners, arms one third of the diameter wide
    arm = radius / 3
    points = [(arm, radius), (-arm, radius), (-arm, arm), (-radius, arm), (-radius, -arm),
              (-arm, -arm), (-arm, -radius), (arm, -radius), (arm, -arm), (radius, -arm),
              (radius, arm), (arm, arm)]  # fmt: skip
    cos, sin = math.cos(angle), math.sin(angle)
    return [(centre[0] + x * cos - y * sin, centre[1] + x * sin + y * cos) for x, y in points]


def _polar(centre: np.ndarray, radius: float, angle: float) -> tuple[float, float]:
    return centre[0] + radius * math.cos(angle), centre[1] + radius * math.sin(angle)


def _background(domain: int, size: int, rng: np.random.Generator) -> np.ndarray:
    ramp = np.linspace(0.0, 1.0, size, dtype=np.float32)
    direction = rng.uniform(0, 2 * math.pi)
    grid = np.cos(direction) * ramp[None, :] + np.sin(direction) * ramp[:, None]
    grid = (grid - grid.min()) / max(float(np.ptp(grid)), 1e-6)
    if domain == 0:  # light gradient
        low, high = rng.uniform(0.65, 0.8), rng.uniform(0.9, 1.0)
        tint = np.array(_hsv_to_rgb(rng.uniform(0, 1), 0.15, 1.0), dtype=np.float32) / 255
    elif domain == 1:  # dark gradient
        low, high = rng.uniform(0.02, 0.1), rng.uniform(0.2, 0.35)
        tint = np.array(_hsv_to_rgb(rng.uniform(0, 1), 0.4, 1.0), dtype=np.float32) / 255
    else:  # striped paper
        low, high = 0.75, 0.95
        tint = np.array([1.0, 0.97, 0.88], dtype=np.float32)
        period = size / rng.uniform(4, 8)
        grid = 0.5 + 0.5 * np.sign(np.sin(2 * math.pi * grid * size / period))
    value = low + (high - low) * grid
    return (np.clip(value[..., None] * tint, 0, 1) * 255).astype(np.uint8)


def _hsv_to_rgb(h: float, s: float, v: float) -> tuple[int, int, int]:
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return tuple(int(round(c * 255)) for c in rgb)
