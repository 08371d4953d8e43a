"""Procedural garment drawing: every class of every attribute of the paper's Table 1 is a visible shape,
texture or wash in the drawn garment. `draw_garment(article, labels, rng, size)` -> RGB image.

Geometry lives in a unit square (x right, y down), drawn at twice the output size and shrunk, so
thin details (straps, slits, scratches) survive as antialiased strokes. Neighbouring classes are close
on purpose (adjacent sleeve lengths, bell vs flutter, checked vs gingham vs houndstooth).
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

Point = tuple[float, float]
Rng = np.random.Generator

SUPERSAMPLE = 2
# Difficulty knobs of the built-in catalogue (calibrated, see README "The built-in synthetic catalogue").
POSE_ROTATE_DEG = 1.0
POSE_SCALE = (1.0, 1.04)
POSE_SHIFT = 0.015
CLUTTER_SHAPES = (0, 3)
NOISE_SIGMA = (1.0, 4.0)
NECK_ZOOM = 2.4  # necklines drawn this much larger than life: they are small details at 64 px
# Texture period as a fraction of the canvas: 8-12 px at 64 px, coarse enough to survive a ResNet's
# stride-4 stem (finer ones were near chance for 18 patterns after the demo budget's 3 epochs).
TEXTURE_PERIOD = (0.13, 0.19)
MOTIF_RADIUS = (0.05, 0.075)  # floral/paisley/animal/abstract motifs, as a fraction of the canvas
DETAIL_WIDTH = 0.022  # seams, ruffles, slits: at least ~1.4 px at 64 px so they survive the resize
SKIRT_FLARE = 1.5  # dress skirt width profiles exaggerated around a half-width of 0.12
DRESS_ARMPIT = 0.32  # a deep armhole: dress sleeves as wide as tops' so their 14 styles show
HEM_DEPTH = 2.2  # hemline shapes' depth, exaggerated so the 7 hemlines differ by more than a few pixels
# sleeves this much wider than the armhole, and their width profiles this much exaggerated
SLEEVE_PROFILE = (1.45, 1.8)
# denim: each wash's brightness and each fade's strength vary this much, so neighbouring shades and fades overlap
JEANS_SHADE_JITTER = (0.8, 1.2)
JEANS_FADE_JITTER = (0.6, 1.4)


# ---------------------------------------------------------------- colours


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v)) * 255.0


def _palette(rng: Rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Primary, a secondary of contrasting hue and brightness (patterns must show in any colours) and a trim."""
    h, light = rng.random(), rng.random() < 0.5
    primary = _hsv(h, rng.uniform(0.25, 0.95), rng.uniform(0.7, 0.95) if light else rng.uniform(0.3, 0.55))
    secondary = _hsv(h + rng.uniform(0.25, 0.75), rng.uniform(0.1, 0.9), rng.uniform(0.05, 0.25) if light else rng.uniform(0.85, 1.0))
    trim = _hsv(rng.random(), rng.uniform(0.0, 0.8), rng.uniform(0.2, 1.0))
    return primary, secondary, trim


def _rgb(c: np.ndarray, alpha: int = 255) -> tuple[int, int, int, int]:
    r, g, b = (int(v) for v in np.clip(c, 0, 255))
    return r, g, b, alpha


# ---------------------------------------------------------------- patterns (textures over the canvas)


def _grid(n: int, rng: Rng) -> tuple[np.ndarray, np.ndarray, float]:
    y, x = np.mgrid[0:n, 0:n].astype(np.float32)
    period = n * rng.uniform(*TEXTURE_PERIOD)
    return x + rng.uniform(0, period), y + rng.uniform(0, period), period


def _mix(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    return a[None, None, :] * (1 - t[..., None]) + b[None, None, :] * t[..., None]


def _stripes(coord: np.ndarray, period: float, duty: float) -> np.ndarray:
    return ((coord / period) % 1.0 < duty).astype(np.float32)


def _shapes_texture(n: int, rng: Rng, p: np.ndarray, s: np.ndarray, t: np.ndarray, kind: str) -> np.ndarray:
    """Textures made of scattered drawn motifs (floral, paisley, animal, abstract)."""
    img = Image.new("RGB", (n, n), _rgb(p)[:3])
    d = ImageDraw.Draw(img)
    count = int(rng.integers(16, 24)) if kind != "abstract" else int(rng.integers(6, 10))
    r = n * rng.uniform(*MOTIF_RADIUS)
    for _ in range(count):
        cx, cy = rng.uniform(0, n, 2)
        if kind == "floral":
            for k in range(5):
                a = 2 * np.pi * k / 5 + rng.uniform(0, 1)
                px, py = cx + r * np.cos(a), cy + r * np.sin(a)
                d.ellipse([px - r * 0.6, py - r * 0.6, px + r * 0.6, py + r * 0.6], fill=_rgb(s)[:3])
            d.ellipse([cx - r * 0.4, cy - r * 0.4, cx + r * 0.4, cy + r * 0.4], fill=_rgb(t)[:3])
        elif kind == "paisley":
            a = rng.uniform(0, 2 * np.pi)
            tail = (cx + 2.4 * r * np.cos(a), cy + 2.4 * r * np.sin(a))
            side = (np.cos(a + np.pi / 2) * r, np.sin(a + np.pi / 2) * r)
            d.polygon([(cx + side[0], cy + side[1]), tail, (cx - side[0], cy - side[1])], fill=_rgb(s)[:3])
            d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=_rgb(s)[:3])
            d.ellipse([cx - r * 0.4, cy - r * 0.4, cx + r * 0.4, cy + r * 0.4], fill=_rgb(t)[:3])
        elif kind == "animal":
            rx, ry = r * rng.uniform(0.7, 1.2), r * rng.uniform(0.5, 0.9)
            d.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], outline=_rgb(s * 0.3)[:3], width=max(2, int(r * 0.4)))
            d.ellipse([cx - rx * 0.5, cy - ry * 0.5, cx + rx * 0.5, cy + ry * 0.5], fill=_rgb(t)[:3])
        else:  # abstract: thick random strokes and blobs
            pts = [tuple(v) for v in rng.uniform(0, n, (3, 2))]
            d.line(pts, fill=_rgb([s, t][int(rng.integers(2))])[:3], width=int(r * rng.uniform(0.6, 1.4)))
            d.ellipse([cx - r, cy - r * 0.6, cx + r * 1.5, cy + r], fill=_rgb(t if rng.random() < 0.5 else s)[:3])
    return np.asarray(img, dtype=np.float32)


_HOUNDSTOOTH = np.array([[1, 1, 1, 1, 0, 0, 0, 1], [1, 1, 1, 1, 0, 0, 1, 1], [1, 1, 1, 1, 0, 1, 1, 0],
                         [1, 1, 1, 1, 1, 1, 0, 0], [0, 0, 0, 1, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0, 0, 0],
                         [0, 1, 1, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0, 0, 0]], dtype=np.float32)


def pattern_texture(name: str, n: int, rng: Rng, p: np.ndarray, s: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(n, n, 3) float texture of one pattern class in colours p (ground), s, t."""
    x, y, per = _grid(n, rng)
    duty = rng.uniform(0.35, 0.55)
    if name in ("floral", "paisley", "animal", "abstract"):
        return _shapes_texture(n, rng, p, s, t, name)
    if name == "solid":
        m = np.zeros_like(x)
    elif name == "horizontal-striped":
        m = _stripes(y, per, duty)
    elif name == "vertical-striped":
        m = _stripes(x, per, duty)
    elif name == "diagonal-striped":
        m = _stripes((x + y * rng.choice([-1, 1])) / np.sqrt(2), per, duty)
    elif name == "checked":
        m = ((np.floor(x / per) + np.floor(y / per)) % 2).astype(np.float32)
    elif name == "gingham":
        m = 0.5 * _stripes(x, per * 0.6, 0.5) + 0.5 * _stripes(y, per * 0.6, 0.5)
    elif name == "polka-dot":
        cx, cy = (x / per) % 1.0 - 0.5, (y / per) % 1.0 - 0.5
        m = ((cx**2 + cy**2) < rng.uniform(0.04, 0.08)).astype(np.float32)
    elif name == "geometric":
        fx, fy = (x / per) % 1.0, (y / per) % 1.0
        m = np.where(fy > fx, 1.0, 0.0) * ((np.floor(x / per) % 2) * 0.5 + 0.5)
    elif name == "camouflage":
        k = int(rng.integers(5, 9))
        small = Image.fromarray((rng.random((k, k)) * 255).astype(np.uint8)).resize((n, n), Image.Resampling.BICUBIC)
        v = np.asarray(small, dtype=np.float32) / 255.0
        m = np.digitize(v, [0.4, 0.6]).astype(np.float32) / 2.0
    elif name == "chevron":
        tri = np.abs((x / per) % 2.0 - 1.0) * per
        m = _stripes(y + tri, per, 0.5)
    elif name == "argyle":
        fx, fy = (x / per) % 1.0 - 0.5, (y / (1.5 * per)) % 1.0 - 0.5
        cell = (np.floor(x / per) + np.floor(y / (1.5 * per))) % 2
        m = np.where(np.abs(fx) + np.abs(fy) < 0.5, cell, 1 - cell) * 0.9
        m = np.maximum(m, (np.abs(((x + y * 0.66) / per) % 1.0 - 0.5) < 0.04) * 0.5)
    elif name == "colourblocked":
        cut1, cut2 = sorted(rng.uniform(0.3, 0.75, 2) * n)
        coord = y if rng.random() < 0.6 else x
        m = np.where(coord < cut1, 0.0, np.where(coord < cut2, 1.0, 0.5)).astype(np.float32)
    elif name == "houndstooth":
        cell = max(1.0, per / 6)
        m = _HOUNDSTOOTH[(y / cell).astype(int) % 8, (x / cell).astype(int) % 8]
    elif name == "tie-dye":
        cx, cy = rng.uniform(0.3, 0.7, 2) * n
        r = np.hypot(x - cx, y - cy)
        theta = np.arctan2(y - cy, x - cx)
        m = 0.5 + 0.5 * np.sin(r / per * 2.5 + 3 * theta)
    elif name == "ombre":
        m = np.clip((y / n - 0.15) / 0.7, 0, 1) ** rng.uniform(0.7, 1.4)
    else:
        raise ValueError(f"no texture for pattern {name!r}")
    if name in ("camouflage", "colourblocked"):
        lo = _mix(p, s, np.clip(m * 2, 0, 1))
        return np.where((m > 0.75)[..., None], t[None, None, :], lo)
    return _mix(p, s, m)


# ---------------------------------------------------------------- shape helpers


class Canvas:
    """A silhouette mask, a decoration layer and unit->pixel conversion for one garment."""

    def __init__(self, n: int):
        self.n = n
        self.mask = Image.new("L", (n, n), 0)
        self.deco = Image.new("RGBA", (n, n), (0, 0, 0, 0))
        self.m = ImageDraw.Draw(self.mask)
        self.d = ImageDraw.Draw(self.deco)
        self.zoom: tuple[float, float, float] | None = None  # (cx, cy, k): enlarge drawing around (cx, cy)

    def _z(self, x: float, y: float) -> Point:
        if self.zoom is None:
            return x * self.n, y * self.n
        cx, cy, k = self.zoom
        return (cx + (x - cx) * k) * self.n, (cy + (y - cy) * k) * self.n

    def px(self, pts: list[Point]) -> list[Point]:
        return [self._z(x, y) for x, y in pts]

    def fill(self, pts: list[Point], on: bool = True) -> None:
        self.m.polygon(self.px(pts), fill=255 if on else 0)

    def ellipse(self, box: tuple[float, float, float, float], on: bool = True) -> None:
        (x0, y0), (x1, y1) = self._z(box[0], box[1]), self._z(box[2], box[3])
        self.m.ellipse([x0, y0, x1, y1], fill=255 if on else 0)

    def paint(self, pts: list[Point], colour: np.ndarray, alpha: int = 255) -> None:
        self.d.polygon(self.px(pts), fill=_rgb(colour, alpha))
        self.fill(pts)

    def line(self, pts: list[Point], colour: np.ndarray, width: float, alpha: int = 255, cut: bool = False) -> None:
        w = max(1, int(round(width * self.n)))
        if cut:
            self.m.line(self.px(pts), fill=0, width=w)
        else:
            self.d.line(self.px(pts), fill=_rgb(colour, alpha), width=w)

    def dots(self, pts: list[Point], r: float, colour: np.ndarray) -> None:
        for x, y in self.px(pts):
            rr = r * self.n * (self.zoom[2] if self.zoom else 1.0)
            self.d.ellipse([x - rr, y - rr, x + rr, y + rr], fill=_rgb(colour))


def _mirror(pts: list[Point]) -> list[Point]:
    return [(1.0 - x, y) for x, y in pts]


def _profile_polygon(ys: np.ndarray, half: np.ndarray, hem: np.ndarray | None = None) -> list[Point]:
    """A symmetric body from half-widths at heights ys; `hem` optionally replaces the bottom edge."""
    left = [(0.5 - w, y) for y, w in zip(ys, half, strict=True)]
    right = [(0.5 + w, y) for y, w in zip(ys[::-1], half[::-1], strict=True)]
    if hem is None:
        return left + right
    return left + [tuple(p) for p in hem] + right


# ---------------------------------------------------------------- sleeves


def _sleeve_widths(style: str, t: np.ndarray, root: float) -> np.ndarray:
    w = {
        "regular": 1 - 0.35 * t,
        "cap": 1.25 - 0.5 * t,
        "puff": 1 + 1.3 * np.exp(-((t - 0.2) / 0.15) ** 2) - 0.35 * t,
        "flutter": 0.9 + 0.8 * t,
        "bell": 0.7 + 1.9 * t**2,
        "bishop": (1 + 0.7 * np.sin(np.pi * np.clip(t / 0.9, 0, 1))) * np.where(t > 0.9, 0.55, 1.0),
        "cold-shoulder": 1 - 0.35 * t,
        "raglan": 1 - 0.3 * t,
        "kimono": np.full_like(t, 1.05),
        "roll-up": 1 - 0.3 * t,
        "batwing": 1.0 - 0.8 * t,
        "lantern": 0.6 + 1.3 * np.sin(np.pi * t),
        "ruffle": 1 - 0.2 * t,
        "cuffed": 0.85 - 0.3 * t,
        "slit": 1 - 0.3 * t,
        "layered": 1 - 0.3 * t,
        "dolman": 1.0 - 0.65 * t,
        "balloon": 0.8 + 1.3 * np.exp(-((t - 0.7) / 0.18) ** 2) - 0.4 * (t > 0.93),
    }[style]
    return root * SLEEVE_PROFILE[0] * np.clip(1 + SLEEVE_PROFILE[1] * (w - 1), 0.25, 2.8)


def _sleeve(c: Canvas, style: str, length: float, top: Point, bottom: Point, angle: float,
            colours: tuple[np.ndarray, np.ndarray, np.ndarray], side: int) -> None:
    """One sleeve hanging from the armhole (top=shoulder, bottom=armpit); side -1 left, +1 right."""
    p, s, trim = colours
    if style in ("kimono", "dolman", "batwing"):
        drop = {"kimono": 0.1, "dolman": 0.16, "batwing": 0.26}[style]
        bottom = (bottom[0], bottom[1] + drop)
    root = float(np.hypot(top[0] - bottom[0], top[1] - bottom[1]))
    c0 = np.array([(top[0] + bottom[0]) / 2, (top[1] + bottom[1]) / 2])
    d = np.array([side * np.sin(angle), np.cos(angle)])
    nrm = np.array([-d[1], d[0]])
    t = np.linspace(0, 1, 14)
    w = _sleeve_widths(style, t, root) / 2
    centre = c0[None, :] + np.outer(t * length, d)
    a = centre + nrm * w[:, None]
    b = centre - nrm * w[:, None]
    poly = [tuple(v) for v in a] + [tuple(v) for v in b[::-1]]
    end = centre[-1]
    if style == "raglan":
        c.paint([(0.5 + side * 0.07, top[1] - 0.015), top, *poly, bottom], s)
    elif style == "layered":
        c.paint(poly, p * 0.65)
        short = int(len(t) * 0.6)
        c.paint([tuple(v) for v in (a[:short] + nrm * 0.015)] + [tuple(v) for v in (b[:short] - nrm * 0.015)][::-1], p * 1.1)
    else:
        c.fill(poly)
    if style == "flutter":
        waves = [tuple(end + nrm * w[-1] * k + d * 0.02 * (-1) ** i) for i, k in enumerate(np.linspace(1, -1, 7))]
        c.fill([tuple(a[-1]), *waves, tuple(b[-1])])
    elif style in ("bishop", "cuffed"):
        i = -4 if style == "cuffed" else -3
        band = [tuple(a[i]), tuple(a[-1]), tuple(b[-1]), tuple(b[i])]
        c.paint(band, s if style == "cuffed" else p * 0.6)
    elif style == "roll-up":
        i = int(len(t) * 0.65)
        c.paint([tuple(a[i] + nrm * 0.02), tuple(a[-1] + nrm * 0.02), tuple(b[-1] - nrm * 0.02), tuple(b[i] - nrm * 0.02)], p * 1.3 + 40)
    elif style == "ruffle":
        for frac in (0.35, 0.65, 0.95):
            i = int((len(t) - 1) * frac)
            zig = [tuple(a[i] + (b[i] - a[i]) * k + d * 0.02 * (k * 8 % 2)) for k in np.linspace(0, 1, 9)]
            c.line(zig, s, DETAIL_WIDTH)
    elif style == "cold-shoulder":
        hole = c0 + d * length * 0.15 + nrm * w[1] * 0.2
        r = root * 0.45
        c.ellipse((hole[0] - r, hole[1] - r * 0.7, hole[0] + r, hole[1] + r * 0.7), on=False)
    elif style == "slit":
        c.line([tuple(centre[3]), tuple(end + d * 0.01)], p, DETAIL_WIDTH * 1.4, cut=True)
    elif style == "cap":
        cx, cy = top
        c.ellipse((cx - root * 0.55, cy - root * 0.35, cx + root * 0.55, cy + root * 0.45))


# ---------------------------------------------------------------- necklines


def _neck(c: Canvas, neck: str, y0: float, colours: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    """Cut or add the neckline around (0.5, y0), the top of the body."""
    c.zoom = (0.5, y0, NECK_ZOOM)
    try:
        _draw_neck(c, neck, y0, colours)
    finally:
        c.zoom = None


def _draw_neck(c: Canvas, neck: str, y0: float, colours: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    p, s, trim = colours
    cut = {
        "round": [(0.43, y0 - 0.01), (0.45, y0 + 0.04), (0.5, y0 + 0.055), (0.55, y0 + 0.04), (0.57, y0 - 0.01)],
        "v-neck": [(0.43, y0 - 0.01), (0.5, y0 + 0.14), (0.57, y0 - 0.01)],
        "boat": [(0.36, y0 - 0.01), (0.4, y0 + 0.025), (0.6, y0 + 0.025), (0.64, y0 - 0.01)],
        "square": [(0.42, y0 - 0.01), (0.42, y0 + 0.09), (0.58, y0 + 0.09), (0.58, y0 - 0.01)],
        "sweetheart": [(0.41, y0 - 0.01), (0.42, y0 + 0.08), (0.46, y0 + 0.1), (0.5, y0 + 0.065), (0.54, y0 + 0.1),
                       (0.58, y0 + 0.08), (0.59, y0 - 0.01)],
        "scoop": [(0.39, y0 - 0.01), (0.41, y0 + 0.08), (0.5, y0 + 0.12), (0.59, y0 + 0.08), (0.61, y0 - 0.01)],
        "keyhole": [(0.45, y0 - 0.01), (0.5, y0 + 0.025), (0.55, y0 - 0.01)],
        "mandarin": [(0.45, y0 - 0.01), (0.5, y0 + 0.03), (0.55, y0 - 0.01)],
        "cowl": [(0.42, y0 - 0.01), (0.45, y0 + 0.04), (0.5, y0 + 0.05), (0.55, y0 + 0.04), (0.58, y0 - 0.01)],
        "shirt-collar": [(0.45, y0 - 0.01), (0.5, y0 + 0.1), (0.55, y0 - 0.01)],
        "tie-up": [(0.44, y0 - 0.01), (0.5, y0 + 0.05), (0.56, y0 - 0.01)],
    }
    if neck in cut:
        c.fill(cut[neck], on=False)
    if neck == "high":
        c.fill([(0.44, y0 + 0.02), (0.445, y0 - 0.06), (0.555, y0 - 0.06), (0.56, y0 + 0.02)])
    elif neck == "mandarin":
        c.paint([(0.44, y0 - 0.045), (0.56, y0 - 0.045), (0.56, y0 + 0.005), (0.44, y0 + 0.005)], trim)
    elif neck == "keyhole":
        c.fill([(0.44, y0 + 0.02), (0.445, y0 - 0.04), (0.555, y0 - 0.04), (0.56, y0 + 0.02)])
        c.ellipse((0.475, y0 + 0.03, 0.525, y0 + 0.1), on=False)
    elif neck == "cowl":
        for k in range(3):
            yy = y0 + 0.06 + 0.035 * k
            c.line([(0.42 - 0.01 * k, yy - 0.02), (0.5, yy + 0.015), (0.58 + 0.01 * k, yy - 0.02)], p * 0.6, 0.01)
    elif neck == "shirt-collar":
        c.paint([(0.43, y0 - 0.02), (0.5, y0 + 0.02), (0.46, y0 + 0.07)], trim)
        c.paint(_mirror([(0.43, y0 - 0.02), (0.5, y0 + 0.02), (0.46, y0 + 0.07)]), trim)
        c.dots([(0.5, y0 + 0.1 + 0.04 * k) for k in range(4)], 0.009, trim)
    elif neck == "tie-up":
        c.paint([(0.5, y0 + 0.05), (0.43, y0 + 0.02), (0.43, y0 + 0.09)], trim)
        c.paint([(0.5, y0 + 0.05), (0.57, y0 + 0.02), (0.57, y0 + 0.09)], trim)
        c.line([(0.5, y0 + 0.05), (0.47, y0 + 0.16)], trim, 0.012)
        c.line([(0.5, y0 + 0.05), (0.53, y0 + 0.16)], trim, 0.012)
    elif neck in ("halter", "off-shoulder", "one-shoulder", "shoulder-straps"):
        _open_top(c, neck, y0, trim)


def _open_top(c: Canvas, neck: str, y0: float, trim: np.ndarray) -> None:
    """Necklines that remove the shoulders: everything above a new top edge is cut away."""
    top = y0 + 0.09
    zoom, c.zoom = c.zoom, None  # the cut itself is life-size: the sleeves below it stay visible
    try:
        if neck == "one-shoulder":
            c.fill([(0.0, 0.0), (1.0, 0.0), (1.0, top + 0.06), (0.36, y0 - 0.005), (0.0, y0 - 0.005)], on=False)
            c.fill([(0.0, 0.0), (0.36, 0.0), (0.36, y0 - 0.005), (0.0, y0 - 0.005)], on=False)
            return
        c.fill([(0.0, 0.0), (1.0, 0.0), (1.0, top), (0.0, top)], on=False)
        if neck == "off-shoulder":
            c.paint([(0.22, top - 0.015), (0.78, top - 0.015), (0.78, top + 0.03), (0.22, top + 0.03)], trim * 0.5 + 100)
    finally:
        c.zoom = zoom
    if neck == "halter":
        c.fill([(0.38, top + 0.01), (0.45, y0 - 0.05), (0.55, y0 - 0.05), (0.62, top + 0.01)])
        c.fill([(0.47, y0 - 0.0), (0.5, top + 0.02), (0.53, y0 - 0.0)], on=False)
    else:  # shoulder-straps
        c.line([(0.41, top + 0.005), (0.4, y0 - 0.04)], trim, 0.014)
        c.line([(0.59, top + 0.005), (0.6, y0 - 0.04)], trim, 0.014)


# ---------------------------------------------------------------- articles


def _top(c: Canvas, labels: dict[str, str], rng: Rng, colours, sleeve_len: dict[str, float]) -> None:
    y0, hem = 0.22, rng.uniform(0.74, 0.8)
    sw, ww = rng.uniform(0.15, 0.18), rng.uniform(0.13, 0.16)
    ys = np.array([y0, y0 + 0.02, 0.42, hem])
    c.fill(_profile_polygon(ys, np.array([0.07, sw, ww, ww + 0.01])))
    _sleeves(c, labels, rng, colours, sleeve_len, (0.5 - sw, y0 + 0.02), (0.5 - ww + 0.01, 0.42))
    _neck(c, labels.get("neck", "round"), y0, colours)


def _sleeves(c: Canvas, labels: dict[str, str], rng: Rng, colours, sleeve_len: dict[str, float],
             shoulder: Point, armpit: Point) -> None:
    length = sleeve_len[labels.get("sleeve_length", "short")] * rng.uniform(0.9, 1.1)
    if length <= 0:
        return
    angle = rng.uniform(0.5, 0.8)  # arms away from the body, so the sleeve's outline shows
    for side in (-1, 1):
        top = shoulder if side < 0 else (1 - shoulder[0], shoulder[1])
        bottom = armpit if side < 0 else (1 - armpit[0], armpit[1])
        _sleeve(c, labels.get("sleeve_style", "regular"), length, top, bottom, angle + rng.normal(0, 0.05), colours, side)


_SKIRTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    # half-width of the dress at relative height u (0 = waist, 1 = hem); waist at 'waist' below
    "a-line": lambda u: 0.1 + 0.12 * u,
    "bodycon": lambda u: 0.095 + 0.03 * np.sin(np.pi * np.clip(u * 1.6, 0, 1)) - 0.01 * u,
    "shift": lambda u: np.full_like(u, 0.15),
    "sheath": lambda u: 0.1 + 0.035 * np.sin(np.pi * np.clip(u * 1.2, 0, 1)),
    "fit-and-flare": lambda u: 0.085 + 0.17 * np.clip(u * 1.8, 0, 1) ** 1.5,
    "wrap": lambda u: 0.1 + 0.09 * u,
    "shirt": lambda u: np.full_like(u, 0.135),
    "skater": lambda u: 0.09 + 0.2 * np.clip(u * 3, 0, 1) ** 0.7,
    "peplum": lambda u: np.where(u < 0.15, 0.1 + 0.5 * u, 0.11),
    "tiered": lambda u: 0.1 + 0.05 * np.floor(u * 3 + 0.999),
    "blouson": lambda u: np.where(u < 0.06, 0.085, 0.12),
    "empire": lambda u: 0.11 + 0.09 * u,
    "tulip": lambda u: 0.11 + 0.07 * np.sin(np.pi * np.clip(u, 0, 1) * 0.8) - 0.04 * u,
    "trapeze": lambda u: 0.16 + 0.12 * u,
    "drop-waist": lambda u: np.where(u < 0.3, 0.13, 0.13 + 0.12 * (u - 0.3) / 0.7),
}


def _hem(shape: str, style: str, y: float, half: float, rng: Rng) -> np.ndarray:
    """The hem edge from left to right (the body's outline runs down the left side, along the hem, up the
    right side): points (x, y)."""
    u = np.linspace(-1, 1, 25)
    x = 0.5 + half * u
    dy = {
        "straight": 0 * u,
        "curved": -0.05 * np.abs(u) ** 2,
        "asymmetric": 0.05 * u * rng.choice([-1, 1]),
        "high-low": -0.09 * (1 - u**2),
        "flared": 0.035 * np.sin(u * np.pi * 2.5),
        "scalloped": 0.03 * np.abs(np.sin(u * np.pi * 2)),  # four scallops, each wide enough to see at 64 px
        "ruffled": 0.045 * np.abs(((u + 1) * 3) % 1.0 - 0.5),  # six teeth
    }[style] * HEM_DEPTH
    return np.stack([x, y + dy], 1)


def _dress(c: Canvas, labels: dict[str, str], rng: Rng, colours, sleeve_len: dict[str, float]) -> None:
    p, s, trim = colours
    shape = labels.get("shape", "a-line")
    y0 = 0.14
    waist = {"empire": 0.27, "drop-waist": 0.46}.get(shape, 0.36)
    hem = {"mini": 0.53, "knee": 0.65, "midi": 0.77, "maxi": 0.89}[labels.get("length", "knee")] + rng.uniform(-0.02, 0.02)
    bust = 0.13 if shape not in ("shift", "trapeze", "blouson", "drop-waist") else {"shift": 0.15, "trapeze": 0.14, "blouson": 0.16, "drop-waist": 0.13}[shape]
    u = np.linspace(0, 1, 20)
    skirt = 0.12 + SKIRT_FLARE * (_SKIRTS[shape](u) - 0.12)
    ys = np.concatenate([[y0, y0 + 0.02, 0.27], waist + u * (hem - waist)])
    halves = np.concatenate([[0.065, bust, bust - 0.01], skirt])
    if shape in ("shift", "trapeze"):
        halves[3:] = np.linspace(bust, skirt[-1], 20)
    hem_pts = _hem(shape, labels.get("hemline", "straight"), hem, float(skirt[-1]), rng)
    c.fill(_profile_polygon(ys, halves, hem_pts))
    _dress_details(c, shape, waist, hem, skirt, colours, rng)
    if labels.get("hemline") == "ruffled":
        c.line([tuple(v - [0, 0.035]) for v in hem_pts], p * 0.45, DETAIL_WIDTH)
    _sleeves(c, labels, rng, colours, sleeve_len, (0.5 - bust, y0 + 0.02), (0.5 - bust + 0.015, DRESS_ARMPIT))
    _neck(c, labels.get("neck", "round"), y0, colours)


def _dress_details(c: Canvas, shape: str, waist: float, hem: float, skirt: np.ndarray, colours, rng: Rng) -> None:
    p, s, trim = colours
    seam = p * 0.45
    if shape in ("empire", "blouson", "drop-waist", "fit-and-flare", "skater", "peplum"):
        w = float(skirt[0]) + 0.01
        c.paint([(0.5 - w, waist - 0.015), (0.5 + w, waist - 0.015), (0.5 + w, waist + 0.015), (0.5 - w, waist + 0.015)],
                trim if shape in ("empire", "blouson") else seam)
    if shape == "wrap":
        c.line([(0.4, 0.16), (0.6, waist + 0.05), (0.55, hem)], seam, DETAIL_WIDTH)
        c.line([(0.62, waist), (0.68, waist + 0.12)], trim, DETAIL_WIDTH * 1.2)
    elif shape == "shirt":
        c.line([(0.5, 0.2), (0.5, hem)], seam, DETAIL_WIDTH * 0.7)
        c.dots([(0.5, 0.22 + k * (hem - 0.25) / 6) for k in range(7)], 0.012, trim)
    elif shape == "tiered":
        for k in (1, 2):
            i = int(round(k / 3 * (len(skirt) - 1))) + 1
            yy = waist + (hem - waist) * k / 3
            c.line([(0.5 - skirt[i], yy), (0.5 + skirt[i], yy)], seam, DETAIL_WIDTH)
    elif shape == "tulip":
        c.line([(0.5 - skirt[0], waist), (0.52, hem)], seam, DETAIL_WIDTH)
        c.line([(0.5 + skirt[0], waist), (0.48, hem)], seam, DETAIL_WIDTH)
    elif shape == "drop-waist":
        for k in range(-2, 3):
            c.line([(0.5 + 0.04 * k, waist + 0.02), (0.5 + 0.07 * k, hem - 0.01)], seam, DETAIL_WIDTH * 0.7)


_SHADES = {"light": (150, 178, 212), "medium": (82, 112, 165), "dark": (38, 55, 98), "black": (32, 32, 38)}
_DISTRESS = {"clean": 0, "mild": 3, "moderate": 7, "heavy": 14, "ripped": 7}


def _jeans(c: Canvas, labels: dict[str, str], rng: Rng) -> np.ndarray:
    """Draw the jeans silhouette and return their own texture (denim shade, fade and distress)."""
    n = c.n
    top, crotch, hem = 0.1, rng.uniform(0.36, 0.42), rng.uniform(0.9, 0.96)
    hw, leg = rng.uniform(0.17, 0.2), rng.uniform(0.07, 0.1)
    c.fill([(0.5 - hw, top), (0.5 + hw, top), (0.5 + hw + 0.01, crotch), (0.5 + leg * 2 + 0.02, hem), (0.52, hem),
            (0.5, crotch), (0.48, hem), (0.5 - leg * 2 - 0.02, hem), (0.5 - hw - 0.01, crotch)])
    base = np.array(_SHADES[labels.get("shade", "medium")], dtype=np.float32) * rng.uniform(*JEANS_SHADE_JITTER)
    base = base + rng.normal(0, 8, 3)
    y, x = np.mgrid[0:n, 0:n].astype(np.float32) / n
    twill = 6 * np.sin((x + y) * n * 1.3)
    tex = base[None, None, :] + twill[..., None]
    fade = {"no-fade": 0.0, "light-fade": 0.3, "heavy-fade": 0.6}[labels.get("fade", "no-fade")] * rng.uniform(*JEANS_FADE_JITTER)
    for cx in (0.5 - hw * 0.55, 0.5 + hw * 0.55):
        for cy, r in ((crotch + 0.02, 0.09), (0.62, 0.06)):
            g = np.exp(-(((x - cx) / (r * 0.8)) ** 2 + ((y - cy) / (r * 1.6)) ** 2))
            tex = tex + (fade * g * 130)[..., None]
    c.paint([(0.5 - hw, top), (0.5 + hw, top), (0.5 + hw, top + 0.035), (0.5 - hw, top + 0.035)], base * 0.8)
    c.line([(0.5, top + 0.04), (0.5, crotch - 0.03)], base * 0.6 + 60, 0.006)
    _distress(c, labels.get("distress", "clean"), rng, crotch, hem, hw, base)
    return tex


def _distress(c: Canvas, level: str, rng: Rng, crotch: float, hem: float, hw: float, base: np.ndarray) -> None:
    for _ in range(_DISTRESS[level] + int(rng.integers(0, 2))):
        cx = 0.5 + rng.choice([-1, 1]) * rng.uniform(0.05, hw * 0.9)
        cy = rng.uniform(crotch - 0.08, hem - 0.1)
        w = rng.uniform(0.03, 0.06)
        c.line([(cx - w, cy), (cx + w, cy + rng.normal(0, 0.01))], np.array([235.0, 235.0, 240.0]), 0.008, alpha=220)
    if level == "ripped":
        for sx in (-1, 1):
            cx, cy = 0.5 + sx * rng.uniform(0.08, 0.12), rng.uniform(0.55, 0.66)
            rx, ry = rng.uniform(0.025, 0.04), rng.uniform(0.018, 0.03)
            c.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), on=False)
            for k in range(3):
                yy = cy - ry + (k + 1) * ry / 2
                c.line([(cx - rx, yy), (cx + rx, yy)], np.array([245.0, 245.0, 245.0]), 0.006)


# ---------------------------------------------------------------- composition


def _background(n: int, rng: Rng, garment: np.ndarray) -> Image.Image:
    """A muted backdrop whose brightness keeps away from the garment's, with a few clutter shapes."""
    dark = garment.max() / 255 > 0.6
    base = _hsv(rng.random(), rng.uniform(0, 0.3), rng.uniform(0.15, 0.4) if dark else rng.uniform(0.7, 1.0))
    y = np.linspace(0, 1, n, dtype=np.float32)[:, None, None]
    grad = base[None, None, :] * (1 - rng.uniform(-0.15, 0.15) * y)
    img = Image.fromarray(np.clip(np.broadcast_to(grad, (n, n, 3)), 0, 255).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(*CLUTTER_SHAPES))):
        box = sorted(rng.uniform(-0.1, 1.1, 2) * n), sorted(rng.uniform(-0.1, 1.1, 2) * n)
        xy = [box[0][0], box[1][0], box[0][1], box[1][1]]
        colour = _rgb(_hsv(rng.random(), rng.uniform(0, 0.5), rng.uniform(0.15, 0.4) if dark else rng.uniform(0.7, 1.0)))[:3]
        kind = rng.integers(3)
        if kind == 0:
            d.rectangle(xy, fill=colour)
        elif kind == 1:
            d.ellipse(xy, fill=colour)
        else:
            d.line(xy, fill=colour, width=int(rng.integers(1, max(2, n // 16))))
    return img.filter(ImageFilter.BoxBlur(rng.uniform(0.5, 2.0)))


def _pose(layer: Image.Image, rng: Rng) -> Image.Image:
    """Rotate, scale and shift the garment layer (a pose-like jitter)."""
    n = layer.size[0]
    a = np.deg2rad(rng.uniform(-POSE_ROTATE_DEG, POSE_ROTATE_DEG))
    k = 1.0 / rng.uniform(*POSE_SCALE)
    tx, ty = rng.uniform(-POSE_SHIFT, POSE_SHIFT, 2) * n
    cos, sin = np.cos(a) * k, np.sin(a) * k
    c = n / 2
    # output pixel (x, y) samples input at M (x - c - t) + c
    coeffs = (cos, -sin, c - cos * (c + tx) + sin * (c + ty), sin, cos, c - sin * (c + tx) - cos * (c + ty))
    return layer.transform((n, n), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR)


# a short sleeve is long enough to show its style; neighbouring lengths stay 0.09 apart (+-10% jitter)
SLEEVE_LENGTHS = {"sleeveless": 0.0, "short": 0.14, "elbow": 0.23, "three-quarter": 0.32, "long": 0.41}


def draw_garment(article: str, labels: dict[str, str], rng: Rng, size: int) -> Image.Image:
    """One RGB image of `article` showing the classes in `labels` (attribute -> class name)."""
    n = size * SUPERSAMPLE
    c = Canvas(n)
    colours = _palette(rng)
    if article == "jeans":
        tex = _jeans(c, labels, rng)
    else:
        p, s, t = colours
        tex = pattern_texture(labels.get("pattern", "solid"), n, rng, p, s, t)
        (_dress if article == "dresses" else _top)(c, labels, rng, colours, SLEEVE_LENGTHS)
    shade = 1 - 0.18 * np.asarray(Image.fromarray((rng.random((4, 4)) * 255).astype(np.uint8)).resize((n, n), Image.Resampling.BICUBIC), dtype=np.float32)[..., None] / 255
    rgb = Image.fromarray(np.clip(tex * shade, 0, 255).astype(np.uint8), "RGB")
    garment = Image.merge("RGBA", (*rgb.split(), c.mask))
    garment = Image.alpha_composite(garment, c.deco)
    out = _background(n, rng, colours[0] if article != "jeans" else np.array([100.0, 120.0, 160.0]))
    posed = _pose(garment, rng)
    out.paste(posed, (0, 0), posed)
    small = out.resize((size, size), Image.Resampling.BOX)
    arr = np.asarray(small, dtype=np.float32)
    arr = arr * rng.uniform(0.8, 1.15) + rng.uniform(-20, 20) + rng.normal(0, rng.uniform(*NOISE_SIGMA), arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
