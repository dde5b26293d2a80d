"""Shapeset-3x2 (Glorot & Bengio 2010): an online stream of 32x32 grey images of shapes.

Glorot & Bengio, "Understanding the difficulty of training deep feedforward neural networks",
AISTATS 2010, section 2.1: each image holds one or two shapes from {triangle, parallelogram,
ellipse} with random shape parameters (relative lengths and angles), scale, rotation,
position and grey level; a second shape may overlap the first by at most 50 % of its area;
9 classes. Parameters here follow the original generator as described for trainlab:

* scale ``s ~ U(0.2, 0.8)`` of the image side: a shape fits in a disc of diameter ``s`` placed
  wholly inside the image (centre uniform in ``[s/2, 1 - s/2]^2``), rotation ``U(0, 2 pi)``;
* triangle: vertices on the unit circle at angles ``2 pi k / 3 + U(-pi/6, pi/6)``;
  parallelogram: half-diagonals ``(1, 0)`` and ``rho (cos a, sin a)``, ``rho ~ U(0.5, 1)``,
  ``a ~ U(pi/4, 3 pi/4)``; ellipse: semi-axes ``1`` and ``b ~ U(0.4, 1)`` (all before scaling);
* grey levels in ``[0, 1]``: background ``U(0, 0.45)``, each shape ``U(0.55, 1)``, the second
  shape painted over the first; half the images inverted (``v -> 1 - v``); pixels are then
  mapped to ``[-1, 1]`` by ``2 v - 1``;
* a pair is redrawn until the shapes' pixel overlap is at most 50 % of the smaller shape's
  area (so neither is hidden by more than half), and every shape covers >= 6 pixels.

Labels (0..8): 0 triangle, 1 parallelogram, 2 ellipse, 3 triangle+triangle,
4 triangle+parallelogram, 5 triangle+ellipse, 6 parallelogram+parallelogram,
7 parallelogram+ellipse, 8 ellipse+ellipse (see :data:`SHAPESET_CLASSES`). Classes are drawn
balanced within each call. A whole batch is rasterized at once in torch,
by scanlines: per row, the half-plane tests of a convex polygon and the quadratic form of
an ellipse reduce to one interval of columns, computed for all rows of all shapes at once.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from trainlab.data.base import DATASETS, Dataset, DatasetMeta, check_seed, check_split_sizes

__all__ = [
    "CLASS_SHAPES",
    "SHAPESET_CLASSES",
    "SHAPE_NAMES",
    "ShapesetStream",
    "rasterize",
    "shapeset",
    "spans",
]

SHAPE_NAMES = ("triangle", "parallelogram", "ellipse")
# (first type, second type or -1) for each label; pairs are unordered.
CLASS_SHAPES: tuple[tuple[int, int], ...] = (
    (0, -1), (1, -1), (2, -1), (0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2),
)
SHAPESET_CLASSES = tuple(
    SHAPE_NAMES[a] if b < 0 else f"{SHAPE_NAMES[a]}+{SHAPE_NAMES[b]}" for a, b in CLASS_SHAPES
)
SIZE = 32
MIN_AREA = 6  # pixels
MAX_OVERLAP = 0.5  # of the smaller shape's area
_CHUNK = 1024  # images per block of pixel work


def _draw_geometry(types: torch.Tensor, g: torch.Generator) -> dict[str, torch.Tensor]:
    """Random shape parameters for shapes of the given types (canonical frame, unit disc)."""
    n = len(types)
    u = torch.rand(n, 9, generator=g)
    scale = 0.2 + 0.6 * u[:, 0]
    r = scale / 2
    centre = r[:, None] + (1 - scale)[:, None] * u[:, 1:3]
    angle = 2 * math.pi * u[:, 3]
    # triangle vertices (4th repeats the 1st: a zero-length edge passes every half-plane test)
    phi = 2 * math.pi * torch.arange(3) / 3 + (u[:, 4:7] - 0.5) * (math.pi / 3)
    tri = torch.stack([phi.cos(), phi.sin()], -1)
    tri = torch.cat([tri, tri[:, :1]], 1)
    rho = 0.5 + 0.5 * u[:, 7]
    alpha = math.pi / 4 + (math.pi / 2) * u[:, 8]
    d1 = torch.stack([torch.ones(n), torch.zeros(n)], -1)
    d2 = torch.stack([rho * alpha.cos(), rho * alpha.sin()], -1)
    par = torch.stack([d1, d2, -d1, -d2], 1)  # counter-clockwise
    verts = torch.where((types == 0)[:, None, None], tri, par)
    beta = 0.4 + 0.6 * torch.rand(n, generator=g)
    return {"centre": centre, "radius": r, "angle": angle, "vertices": verts, "beta": beta}


def spans(types: torch.Tensor, geo: dict[str, torch.Tensor], size: int = SIZE) -> torch.Tensor:
    """Per image row, the first and last pixel column whose centre is inside the shape.

    Returns int64 ``(n, size, 2)``; an empty row has ``first > last``. A pixel centre
    ``p = ((j + 0.5) / size, (i + 0.5) / size)`` maps to the canonical frame by the affine map
    ``q = R(-angle) (p - centre) / radius``. It is inside a convex polygon with counter-clockwise
    vertices ``v_k`` when every ``(v_{k+1} - v_k) x (q - v_k) >= 0`` and inside the ellipse when
    ``1 - q_x^2 - (q_y / beta)^2 >= 0``. On row ``i`` each half-plane test is linear in ``x`` and
    the ellipse test quadratic, so the inside set of a convex shape is one interval per row:
    scanline rasterization, vectorized over shapes and rows (no per-pixel work).
    """
    cos, sin, r = geo["angle"].cos(), geo["angle"].sin(), geo["radius"]
    cx, cy = geo["centre"][:, 0], geo["centre"][:, 1]
    a1, b1, c1 = cos / r, sin / r, -(cos * cx + sin * cy) / r  # q_x = a1 x + b1 y + c1
    a2, b2, c2 = -sin / r, cos / r, (sin * cx - cos * cy) / r  # q_y = a2 x + b2 y + c2
    y = ((torch.arange(size, dtype=torch.float32) + 0.5) / size)[None, :]  # (1, size)
    inf = torch.tensor(float("inf"))

    # Convex polygon: edge k gives P x + Q y + R >= 0.
    v = geo["vertices"]
    e = v.roll(-1, dims=1) - v
    ex, ey, vx, vy = e[..., 0], e[..., 1], v[..., 0], v[..., 1]
    P = ex * a2[:, None] - ey * a1[:, None]
    Q = ex * b2[:, None] - ey * b1[:, None]
    R = ex * c2[:, None] - ey * c1[:, None] + ey * vx - ex * vy
    rest = Q[:, :, None] * y[:, None, :] + R[:, :, None]  # (n, 4, size)
    Pk = P[:, :, None]
    bound = -rest / torch.where(Pk == 0, torch.ones_like(Pk), Pk)
    lo = torch.where(Pk > 0, bound, -inf)
    hi = torch.where(Pk < 0, bound, inf)
    # P == 0: the edge does not depend on x; the row is all in or all out (degenerate edges
    # of triangles have P = Q = R = 0 and pass).
    out = (Pk == 0) & (rest < 0)
    lo = torch.where(out, inf, lo).amax(1)
    hi = torch.where(out, -inf, hi).amin(1)

    # Ellipse: A x^2 + B x + C >= 0 with A < 0.
    ib2 = 1 / geo["beta"].square()
    A = -(a1 * a1 + a2 * a2 * ib2)[:, None]
    B = -2 * ((a1 * b1 + a2 * b2 * ib2)[:, None] * y + (a1 * c1 + a2 * c2 * ib2)[:, None])
    C = 1 - (
        (b1 * b1 + b2 * b2 * ib2)[:, None] * y * y
        + 2 * (b1 * c1 + b2 * c2 * ib2)[:, None] * y
        + (c1 * c1 + c2 * c2 * ib2)[:, None]
    )
    disc = B * B - 4 * A * C
    sq = disc.clamp_min(0).sqrt()
    elo = torch.where(disc >= 0, (-B + sq) / (2 * A), inf)
    ehi = torch.where(disc >= 0, (-B - sq) / (2 * A), -inf)

    is_ell = (types == 2)[:, None]
    lo, hi = torch.where(is_ell, elo, lo), torch.where(is_ell, ehi, hi)
    # x_j = (j + 0.5) / size is inside [lo, hi] iff ceil(lo*size - 0.5) <= j <= floor(hi*size - 0.5)
    first = (lo * size - 0.5).clamp(-1, size).ceil().long()
    last = (hi * size - 0.5).clamp(-1, size).floor().long()
    return torch.stack([first.clamp(0, size), last.clamp(-1, size - 1)], -1)


def span_masks(sp: torch.Tensor) -> torch.Tensor:
    """Boolean masks ``(n, size, size)`` from row spans ``(n, size, 2)``."""
    j = torch.arange(sp.shape[1])
    return (j >= sp[..., 0:1]) & (j <= sp[..., 1:2])


def span_area(sp: torch.Tensor) -> torch.Tensor:
    """Pixels covered, per shape: sum over rows of ``max(0, last - first + 1)``."""
    return (sp[..., 1] - sp[..., 0] + 1).clamp_min(0).sum(-1)


def rasterize(types: torch.Tensor, geo: dict[str, torch.Tensor], size: int = SIZE) -> torch.Tensor:
    """Boolean masks ``(n, size, size)``: pixel centres inside each shape (see :func:`spans`)."""
    return span_masks(spans(types, geo, size))


class ShapesetStream:
    """An endless, seeded source of Shapeset-3x2 examples.

    ``ShapesetStream(seed).sample(n)`` returns ``(x, y)``: ``x`` float32 ``(n, 1, 32, 32)`` in
    ``[-1, 1]``, ``y`` int64 labels in ``0..8``. Each call continues the stream; the same seed
    and the same sequence of calls give the same examples. ``state_dict()`` /
    ``load_state_dict()`` save and restore the position.
    """

    def __init__(self, seed: int = 0, device: str | torch.device | None = None) -> None:
        self.seed = check_seed(seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.device = torch.device(device) if device is not None else None

    def sample(
        self, n: int, return_params: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor] | tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        """``n`` new examples (and with ``return_params`` the drawn parameters, for checks)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be an integer >= 0. Received: n={n!r}.")
        g = self.generator
        # balanced labels: a random rotation of 0..8 repeated, then shuffled
        offset = int(torch.randint(0, 9, (1,), generator=g))
        labels = ((torch.arange(n) + offset) % 9)[torch.randperm(n, generator=g)]
        pair_types = torch.tensor(CLASS_SHAPES)[labels]  # (n, 2)
        # unordered pairs: which of the two is painted first is random
        swap = (torch.rand(n, generator=g) < 0.5) & (pair_types[:, 1] >= 0)
        types = torch.where(swap[:, None], pair_types.flip(1), pair_types)
        has2 = types[:, 1] >= 0
        t2 = types[:, 1].clamp_min(0)
        geo = [_draw_geometry(types[:, 0], g), _draw_geometry(t2, g)]
        sp = [spans(types[:, 0], geo[0]), spans(t2, geo[1])]
        idx = torch.arange(n)  # examples still to check
        for _ in range(1000):
            s1, s2 = sp[0][idx], sp[1][idx]
            a1, a2 = span_area(s1), span_area(s2)
            # both shapes are convex, so their overlap is one interval per row too
            inter = span_area(torch.stack([torch.maximum(s1[..., 0], s2[..., 0]),
                                           torch.minimum(s1[..., 1], s2[..., 1])], -1))
            ok = (a1 >= MIN_AREA) & (
                ~has2[idx] | ((a2 >= MIN_AREA) & (inter <= MAX_OVERLAP * torch.minimum(a1, a2)))
            )
            idx = idx[~ok]
            if len(idx) == 0:
                break
            # redraw the whole geometry of a failing example (both shapes)
            for k, tk in ((0, types[idx, 0]), (1, t2[idx])):
                new = _draw_geometry(tk, g)
                for key, val in new.items():
                    geo[k][key][idx] = val
                sp[k][idx] = spans(tk, new)
        else:  # pragma: no cover - would need astronomically bad luck
            raise RuntimeError("Shapeset could not place non-overlapping shapes")
        bg = 0.45 * torch.rand(n, generator=g)
        grey = 0.55 + 0.45 * torch.rand(n, 2, generator=g)
        invert = torch.rand(n, generator=g) < 0.5
        # Per-image palette (background, shape 1, shape 2) with the inversion folded in,
        # mapped to [-1, 1]; pixels then only pick from it.
        pal = torch.cat([bg[:, None], grey], 1)
        pal = 2 * torch.where(invert[:, None], 1 - pal, pal) - 1
        x = torch.empty(n, SIZE * SIZE)
        for lo in range(0, n, _CHUNK):  # chunks keep the pixel work in cache
            c = slice(lo, lo + _CHUNK)
            m1 = span_masks(sp[0][c]).reshape(-1, SIZE * SIZE)
            m2 = span_masks(sp[1][c]).reshape(-1, SIZE * SIZE) & has2[c, None]
            x[c] = torch.where(m2, pal[c, 2:3], torch.where(m1, pal[c, 1:2], pal[c, 0:1]))
        x = x.reshape(n, 1, SIZE, SIZE)
        if self.device is not None:
            x, labels = x.to(self.device), labels.to(self.device)
        if not return_params:
            return x, labels
        params = {
            "types": types,
            "centre": torch.stack([geo[0]["centre"], geo[1]["centre"]], 1),
            "radius": torch.stack([geo[0]["radius"], geo[1]["radius"]], 1),
            "angle": torch.stack([geo[0]["angle"], geo[1]["angle"]], 1),
            "vertices": torch.stack([geo[0]["vertices"], geo[1]["vertices"]], 1),
            "beta": torch.stack([geo[0]["beta"], geo[1]["beta"]], 1),
            "grey": grey,
            "background": bg,
            "inverted": invert,
        }
        return x, labels, params

    def batches(self, batch_size: int):
        """Yield ``(x, y)`` batches of fresh examples forever (online training)."""
        while True:
            yield self.sample(batch_size)

    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seed = state["seed"]
        self.generator.set_state(state["generator"])

    def __repr__(self) -> str:
        return f"ShapesetStream(seed={self.seed})"


def shapeset(n_train: int = 10000, n_test: int = 2000, seed: int = 0) -> Dataset:
    """A fixed Shapeset-3x2 split: training from stream ``2*seed``, test from ``2*seed + 1``
    (so the test set does not depend on ``n_train``). For online training use
    :class:`ShapesetStream`."""
    check_split_sizes(n_train, n_test)
    check_seed(seed)
    x_tr, y_tr = ShapesetStream(2 * seed).sample(n_train)
    x_te, y_te = ShapesetStream(2 * seed + 1).sample(n_test)
    meta = DatasetMeta(
        "shapeset",
        SHAPESET_CLASSES,
        (1, SIZE, SIZE),
        "Glorot & Bengio 2010, Shapeset-3x2 (re-implemented generator)",
        "generated by trainlab (MIT); no third-party data",
        "32x32 grey images of one or two shapes, 9 classes",
        {"seed": seed},
    )
    return Dataset(x_tr, y_tr, x_te, y_te, meta)


DATASETS.add(
    "shapeset",
    shapeset,
    description="Shapeset-3x2: 32x32 grey images of 1-2 shapes, 9 classes (online stream)",
    reference="Glorot & Bengio 2010",
    aliases=("shapeset_3x2", "shapeset3x2"),
    meta={"embedded": True, "kind": "image"},
)
