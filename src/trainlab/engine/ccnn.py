"""Convexified convolutional neural networks (Zhang, Liang & Wainwright 2017, ICML).

Lecture 000, "Convexifying CNN parameters": a two-layer CNN with ``r`` filters ``w_j``,
patches ``z_p(x)`` (``p = 1..P``) and output weights ``alpha_{k,j,p}`` computes

    H(x)_k = sum_j sum_p alpha_{k,j,p} sigma(w_j^T z_p(x)).

Replacing ``sigma(w^T z)`` by a function in the RKHS of a kernel on patches and writing the
network through one parameter matrix ``A`` (rows: (class, patch position); columns: kernel
features), the CNN is the case ``rank(A) <= r``. CCNN drops the non-convex rank constraint
for its convex relaxation, a nuclear-norm ball ``||A||_* <= R``, and solves

    min_A  (1/n) sum_i  CE( softmax(<Z(x_i), A_k>)_k , y_i )   s.t.  ||A||_* <= R

by projected SGD (projection: SVD, then the singular values projected onto the l1 ball of
radius ``R``; Duchi et al. 2008), with iterate averaging. The filters are recovered from the
top-``r`` right singular vectors of ``A``; their responses on the (pooled) features are the
next layer's input (layer-wise stacking, Algorithm 2 of the paper).

The feature pipeline follows the authors' code (github.com/zhangyuc/CCNN, ``src/mnist``):

1. patches: ``F.unfold`` with ``patch x patch`` windows -> ``(N, L, C*patch*patch)``;
2. local contrast normalization of each patch: ``z <- (z - mean(z)) / (||z - mean(z)|| + eps)``;
3. ZCA whitening of patches: ``z <- (z - mu) U diag((lambda + eps)^(-1/2)) U^T`` with the
   covariance of the training patches;
4. kernel features of ``z / sqrt(C)`` (``C`` = input channels, so that ``gamma`` means the same
   for any channel count) for the RBF kernel ``k(z, z') = exp(-gamma ||z - z'||^2)``:
   random Fourier features ``sqrt(2/D) cos(z W + b)``, ``W ~ N(0, 2 gamma)``,
   ``b ~ U[0, 2 pi)`` (Rahimi & Recht 2007), or Nystrom features
   ``k(z, landmarks) K_LL^(-1/2)`` (Williams & Seeger 2001);
5. average pooling over ``pool x pool`` windows of patch positions;
6. centring of each feature and one global scale so that a pooled feature vector has unit
   norm on average.

**Memory.** The authors' code keeps every feature vector of every image in memory (the README
reports ~10 GB for MNIST). Here the training images stay as they are and the features of a
mini-batch are computed on the fly in chunks (``cache="none"``), or, when they fit into
``memory_budget``, computed once and cached in float16 (``cache="auto"``); only the small
filter responses are kept between layers. All of it runs batched on the layer's device.

Public names: :class:`CCNN`, :class:`CCNNLayer`, :class:`CCNNHistory`,
:class:`RandomFourierFeatures`, :class:`NystromFeatures` (registry ``KERNEL_FEATURES``:
``"rff"``, ``"nystrom"``) and the functions :func:`extract_patches`,
:func:`local_contrast_normalize`, :func:`zca_matrix`, :func:`rbf_kernel`,
:func:`random_fourier_features`, :func:`project_l1_ball`, :func:`project_nuclear_ball`,
:func:`recover_filters`.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainlab.registry import Registry

__all__ = [
    "CCNN",
    "CCNNHistory",
    "CCNNLayer",
    "KERNEL_FEATURES",
    "NystromFeatures",
    "RandomFourierFeatures",
    "avg_pool_positions",
    "extract_patches",
    "local_contrast_normalize",
    "nuclear_norm",
    "project_l1_ball",
    "project_nuclear_ball",
    "random_fourier_features",
    "rbf_kernel",
    "recover_filters",
    "zca_matrix",
]

KERNEL_FEATURES = Registry("kernel_features")

_AVERAGES = ("epoch", "all", "none")
_CACHES = ("auto", "none", "float16", "float32")
# Largest intermediate tensor (bytes) one feature chunk may create: keeps the peak small.
_CHUNK_BYTES = 48 * 2**20


# -- argument checks --------------------------------------------------------------------------
def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer. Received: {name}={value!r}.")
    return int(value)


def _positive_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number. Received: {name}={value!r}.")
    return float(value)


def _nonnegative_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0. Received: {name}={value!r}.")
    return float(value)


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}. Received: {name}={value!r}.")
    return value


# -- pure functions ---------------------------------------------------------------------------
def extract_patches(x: Tensor, patch: int, stride: int = 1, padding: int = 0
                    ) -> tuple[Tensor, tuple[int, int]]:
    """Patches ``z_p(x)`` of images ``x`` ``(N, C, H, W)`` -> ``(N, L, C*patch*patch)``.

    ``L = H' W'`` positions in row-major order with ``H' = (H + 2 padding - patch) // stride
    + 1``; each patch lists channel by channel its ``patch x patch`` pixels (``F.unfold``'s
    order). Returns the patches and ``(H', W')``.
    """
    if x.ndim != 4:
        raise ValueError(f"x must have shape (N, C, H, W). Received: x.shape={tuple(x.shape)}.")
    h, w = x.shape[-2:]
    if patch > h + 2 * padding or patch > w + 2 * padding:
        raise ValueError(
            f"patch={patch} does not fit into images of shape {tuple(x.shape[1:])} "
            f"with padding={padding}."
        )
    cols = F.unfold(x, patch, padding=padding, stride=stride)  # (N, C*k*k, L)
    grid = ((h + 2 * padding - patch) // stride + 1, (w + 2 * padding - patch) // stride + 1)
    return cols.transpose(1, 2), grid


def local_contrast_normalize(z: Tensor, eps: float = 0.1) -> Tensor:
    """``(z - mean(z)) / (||z - mean(z)||_2 + eps)`` over the last dimension (each patch).

    The authors' code uses ``eps = 0.1``: flat patches (blank background) stay near 0
    instead of having their noise blown up to unit norm.
    """
    z = z - z.mean(-1, keepdim=True)
    return z / (z.norm(dim=-1, keepdim=True) + eps)


def zca_matrix(cov: Tensor, eps: float = 0.1) -> Tensor:
    """ZCA whitening matrix ``U diag((lambda + eps)^(-1/2)) U^T`` of a covariance ``cov``
    (Bell & Sejnowski 1997); symmetric, so ``x W`` and ``x W^T`` agree."""
    lam, u = torch.linalg.eigh(cov)
    return (u * (lam.clamp_min(0) + eps).rsqrt()) @ u.T


def rbf_kernel(x: Tensor, y: Tensor, gamma: float) -> Tensor:
    """``k(x_i, y_j) = exp(-gamma ||x_i - y_j||^2)`` for rows of ``x`` ``(n, d)``, ``y``
    ``(m, d)`` -> ``(n, m)``."""
    return torch.exp(-gamma * torch.cdist(x, y).square())


def random_fourier_features(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """``sqrt(2/D) cos(x W + b)`` (Rahimi & Recht 2007) for ``x`` ``(..., d)``, ``W``
    ``(d, D)``, ``b`` ``(D,)``.

    With ``W ~ N(0, 2 gamma)`` and ``b ~ U[0, 2 pi)``, ``E[phi(x)^T phi(y)] =
    E[cos(w^T (x - y))] = exp(-gamma ||x - y||^2)`` (Bochner's theorem).
    """
    d_out = weight.shape[1]
    return torch.cos(torch.matmul(x, weight).add_(bias)).mul_(math.sqrt(2.0 / d_out))


def avg_pool_positions(f: Tensor, grid: tuple[int, int], pool: int, stride: int | None = None
                       ) -> tuple[Tensor, tuple[int, int]]:
    """Average pooling of per-position features ``f`` ``(N, L, D)`` laid out on ``grid``
    ``(H', W')`` over ``pool x pool`` windows (``F.avg_pool2d``, windows inside the grid)."""
    if pool == 1 and (stride in (None, 1)):
        return f, grid
    n, _, d = f.shape
    img = f.transpose(1, 2).reshape(n, d, *grid)
    out = F.avg_pool2d(img, pool, stride=stride or pool)
    return out.flatten(2).transpose(1, 2), (out.shape[-2], out.shape[-1])


def project_l1_ball(v: Tensor, radius: float) -> Tensor:
    """Euclidean projection of each row of ``v`` ``(..., n)`` onto ``{w : ||w||_1 <= radius}``.

    Duchi, Shalev-Shwartz, Singer & Chandra 2008: with ``u = sort(|v|)`` decreasing,
    ``rho = max{j : u_j > (sum_{i<=j} u_i - radius) / j}``,
    ``theta = (sum_{i<=rho} u_i - radius) / rho`` and ``w = sign(v) max(|v| - theta, 0)``;
    rows already inside the ball are returned unchanged.
    """
    radius = _positive_float("radius", radius)
    a = v.abs()
    u = torch.sort(a, dim=-1, descending=True).values
    css = u.cumsum(-1)
    j = torch.arange(1, v.shape[-1] + 1, device=v.device, dtype=v.dtype)
    # The condition holds on a prefix of the sorted values, so rho is the count.
    rho = (u * j > css - radius).sum(-1, keepdim=True).clamp_min(1)
    theta = (css.gather(-1, rho - 1) - radius) / rho.to(v.dtype)
    w = torch.sign(v) * (a - theta).clamp_min(0)
    inside = a.sum(-1, keepdim=True) <= radius
    return torch.where(inside, v, w)


def nuclear_norm(a: Tensor) -> Tensor:
    """``||A||_* = sum of the singular values`` (Schatten-1 norm) of a matrix."""
    return torch.linalg.svdvals(a).sum()


def project_nuclear_ball(a: Tensor, radius: float, return_svd: bool = False):
    """Euclidean (Frobenius) projection of a matrix onto ``{A : ||A||_* <= radius}``.

    With ``A = U diag(s) V^T``, the projection is ``U diag(P_l1(s)) V^T`` where ``P_l1`` is
    the projection onto the l1 ball of radius ``radius`` (the singular values are
    non-negative, so it thresholds them by one ``theta``). With ``return_svd=True`` returns
    ``(projected, U, s_projected, Vh)``.
    """
    u, s, vh = torch.linalg.svd(a, full_matrices=False)
    s = project_l1_ball(s, radius)
    out = (u * s) @ vh
    return (out, u, s, vh) if return_svd else out


def recover_filters(a: Tensor, rank: int) -> Tensor:
    """Filters of a CCNN layer: the top-``rank`` right singular vectors of ``A`` (rows of
    ``V^T``), ``(rank, D)``; orthonormal rows spanning the row space of ``A``'s best
    rank-``rank`` approximation (Eckart-Young)."""
    rank = _positive_int("rank", rank)
    _, _, vh = torch.linalg.svd(a, full_matrices=False)
    if rank > vh.shape[0]:
        raise ValueError(
            f"rank must be at most min(A.shape)={vh.shape[0]}. Received: rank={rank}."
        )
    return vh[:rank].clone()


# -- kernel feature maps ----------------------------------------------------------------------
class RandomFourierFeatures(nn.Module):
    """Random Fourier features for the RBF kernel ``exp(-gamma ||x - y||^2)`` (Rahimi & Recht
    2007): ``phi(x) = sqrt(2/D) cos(x W + b)`` with ``W ~ N(0, 2 gamma)``, ``b ~ U[0, 2 pi)``.

    Args:
        in_features: ``d``; out_features: ``D``; gamma: the kernel's inverse width.
    """

    def __init__(self, in_features: int, out_features: int, gamma: float = 1.0) -> None:
        super().__init__()
        self.in_features = _positive_int("in_features", in_features)
        self.out_features = _positive_int("features", out_features)
        self.gamma = _positive_float("gamma", gamma)
        self.register_buffer("weight", torch.empty(in_features, out_features))
        self.register_buffer("bias", torch.empty(out_features))
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        w = torch.randn(self.in_features, self.out_features, generator=generator)
        b = torch.rand(self.out_features, generator=generator)
        self.weight.copy_(w.mul_(math.sqrt(2 * self.gamma)))
        self.bias.copy_(b.mul_(2 * math.pi))

    def fit(self, sample: Tensor, generator: torch.Generator | None = None
            ) -> RandomFourierFeatures:
        """Draw ``W`` and ``b`` (data-independent: ``sample`` is not used)."""
        self.reset_parameters(generator)
        return self

    def forward(self, x: Tensor) -> Tensor:
        return random_fourier_features(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, gamma={self.gamma}"


class NystromFeatures(nn.Module):
    """Nystrom features for the RBF kernel (Williams & Seeger 2001): with ``m`` landmarks
    ``L`` drawn from the data, ``phi(x) = k(x, L) K_LL^(-1/2)``, so ``phi(x)^T phi(y) =
    k(x, L) K_LL^(-1) k(L, y)``. Eigenvalues of ``K_LL`` below ``1e-6 max`` are clamped."""

    def __init__(self, in_features: int, out_features: int, gamma: float = 1.0) -> None:
        super().__init__()
        self.in_features = _positive_int("in_features", in_features)
        self.out_features = _positive_int("features", out_features)
        self.gamma = _positive_float("gamma", gamma)
        self.register_buffer("landmarks", torch.zeros(out_features, in_features))
        self.register_buffer("transform", torch.eye(out_features))

    def fit(self, sample: Tensor, generator: torch.Generator | None = None) -> NystromFeatures:
        """Draw ``out_features`` landmarks among the rows of ``sample`` ``(n, d)`` (without
        replacement when ``n >= out_features``)."""
        n = sample.shape[0]
        if n < 1:
            raise ValueError("NystromFeatures.fit needs at least one sample row.")
        if n >= self.out_features:
            idx = torch.randperm(n, generator=generator)[:self.out_features]
        else:
            idx = torch.randint(0, n, (self.out_features,), generator=generator)
        lm = sample[idx.to(sample.device)].to(self.landmarks)
        k = rbf_kernel(lm.double(), lm.double(), self.gamma)
        lam, u = torch.linalg.eigh(k)
        lam = lam.clamp_min(1e-6 * float(lam.max()))
        self.landmarks.copy_(lm)
        self.transform.copy_(((u * lam.rsqrt()) @ u.T).to(self.transform))
        return self

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        k = rbf_kernel(x.reshape(-1, shape[-1]), self.landmarks, self.gamma)
        return (k @ self.transform).reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, gamma={self.gamma}"


KERNEL_FEATURES.add(
    "rff", RandomFourierFeatures, aliases=("random_fourier",),
    description="random Fourier features sqrt(2/D) cos(xW + b) for the RBF kernel",
    reference="Rahimi & Recht 2007; Zhang, Liang & Wainwright 2017",
)
KERNEL_FEATURES.add(
    "nystrom", NystromFeatures,
    description="Nystrom features k(x, L) K_LL^(-1/2) for the RBF kernel",
    reference="Williams & Seeger 2001; Zhang, Liang & Wainwright 2017",
)


# -- history ----------------------------------------------------------------------------------
@dataclass
class CCNNHistory:
    """What :meth:`CCNN.fit` measured.

    Attributes:
        rows: one dict per (layer, epoch): ``layer`` (0-based), ``epoch`` (1-based),
            ``objective`` (mean multinomial logistic loss on the training set at the averaged
            iterate, the convex problem's objective), ``train_error``, ``test_error`` (when
            test data were given), ``nuclear_norm`` (of the averaged iterate) and ``seconds``
            (training time of the layer so far, evaluation excluded).
        singular_values: per layer, the singular values of the final parameter matrix.
        cache: per layer, how the training features were held (``"none"`` = streamed,
            ``"float16"``, ``"float32"``).
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    singular_values: list[list[float]] = field(default_factory=list)
    cache: list[str] = field(default_factory=list)

    def series(self, key: str, layer: int = -1) -> list[float]:
        """Values of ``key`` per epoch for ``layer`` (``-1``: the last layer)."""
        layers = sorted({r["layer"] for r in self.rows})
        if not layers:
            return []
        want = layers[layer]
        return [float(r[key]) for r in self.rows if r["layer"] == want and key in r]

    @property
    def objective(self) -> list[float]:
        """The last layer's objective per epoch."""
        return self.series("objective")


# -- layer ------------------------------------------------------------------------------------
class CCNNLayer(nn.Module):
    """One convexified convolutional layer: features, convex training, filter recovery.

    Args:
        patch: patch (filter) size; ``stride``, ``padding``: of the patch grid.
        features: ``D``, number of kernel features per patch.
        kernel: ``"rff"`` (random Fourier) or ``"nystrom"`` (registry ``KERNEL_FEATURES``).
        gamma: RBF inverse width, ``k(z, z') = exp(-gamma ||z - z'||^2)``.
        pool: average-pooling window over patch positions (1: none); ``pool_stride``
            defaults to ``pool``.
        radius: ``R``, the nuclear-norm bound ``||A||_* <= R``.
        rank: ``r``, number of filters recovered (the next layer's channels).
        lr, epochs, batch_size: projected SGD (constant step, as the authors' code).
        project_every: project onto the ball every this many SGD steps and at the end of
            each epoch (10 as the authors' code: one SVD costs far more than a step; 1 is
            textbook projected SGD). Averages use the projected iterates only, so they stay
            in the ball.
        average: ``"epoch"`` (average of the projected iterates of the current epoch, as
            the authors' windows), ``"all"`` (Polyak-Ruppert average since the start) or
            ``"none"`` (last projected iterate).
        lcn_eps, zca_eps: the constants of local contrast normalization and ZCA (0.1 in the
            authors' code).

    After :meth:`fit`, the layer holds the ZCA statistics, the kernel feature map, the
    feature normalization, the parameter matrix ``weight`` ``(K, P, D)`` (as a matrix
    ``(K*P, D)``), the ``filters`` ``(r, D)`` and the singular values; ``layer(x)`` gives the
    filter responses ``(N, r, H_p, W_p)`` and :meth:`logits` the class scores.
    """

    def __init__(self, patch: int = 5, stride: int = 1, features: int = 500,
                 pool: int = 2, radius: float = 100.0, rank: int = 16, *,
                 padding: int = 0, kernel: str = "rff", gamma: float = 0.2,
                 pool_stride: int | None = None, lr: float = 0.2, epochs: int = 10,
                 batch_size: int = 50, project_every: int = 10, average: str = "epoch",
                 lcn_eps: float = 0.1, zca_eps: float = 0.1) -> None:
        super().__init__()
        self.patch = _positive_int("patch", patch)
        self.stride = _positive_int("stride", stride)
        if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
            raise ValueError(f"padding must be an integer >= 0. Received: padding={padding!r}.")
        self.padding = padding
        self.features = _positive_int("features", features)
        self.kernel = KERNEL_FEATURES.get(kernel).name
        self.gamma = _positive_float("gamma", gamma)
        self.pool = _positive_int("pool", pool)
        self.pool_stride = self.pool if pool_stride is None \
            else _positive_int("pool_stride", pool_stride)
        self.radius = _positive_float("radius", radius)
        self.rank = _positive_int("rank", rank)
        self.lr = _positive_float("lr", lr)
        self.epochs = _positive_int("epochs", epochs)
        self.batch_size = _positive_int("batch_size", batch_size)
        self.project_every = _positive_int("project_every", project_every)
        self.average = _choice("average", average, _AVERAGES)
        self.lcn_eps = _nonnegative_float("lcn_eps", lcn_eps)
        self.zca_eps = _nonnegative_float("zca_eps", zca_eps)
        self.in_shape: tuple[int, int, int] | None = None
        self.grid: tuple[int, int] | None = None  # pooled grid (H_p, W_p)
        self.feature_map: nn.Module | None = None
        self.cache_mode = ""
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Forget everything learned (ZCA, features, normalization, weights, filters)."""
        for name in ("zca_mean", "zca", "feat_mean", "feat_scale", "weight", "filters",
                     "singular_values"):
            self.register_buffer(name, None)
        self.in_shape = self.grid = self.feature_map = None

    def extra_repr(self) -> str:
        return (f"patch={self.patch}, stride={self.stride}, features={self.features}, "
                f"kernel={self.kernel!r}, gamma={self.gamma}, pool={self.pool}, "
                f"radius={self.radius}, rank={self.rank}")

    @property
    def fitted(self) -> bool:
        return self.filters is not None

    # -- feature pipeline -------------------------------------------------------------------
    def check_input(self, x: Tensor, arg: str = "x") -> Tensor:
        """``x`` must be ``(N, C, H, W)`` of the shape the layer was fitted on."""
        if not isinstance(x, Tensor):
            raise TypeError(f"{arg} must be a torch tensor. Received: {type(x).__name__}.")
        if self.in_shape is not None:
            if x.ndim != 4 or tuple(x.shape[1:]) != self.in_shape:
                raise ValueError(
                    f"{arg} must have shape (N, {', '.join(map(str, self.in_shape))}) as the "
                    f"data the layer was fitted on. Received: {arg}.shape={tuple(x.shape)}."
                )
        elif x.ndim != 4:
            raise ValueError(
                f"{arg} must have shape (N, C, H, W). Received: {arg}.shape={tuple(x.shape)}."
            )
        return x

    def _patches(self, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """Contrast-normalized patches ``(n, L, d)`` of a chunk."""
        z, grid = extract_patches(x.float(), self.patch, self.stride, self.padding)
        return local_contrast_normalize(z, self.lcn_eps), grid

    def _raw_features(self, x: Tensor) -> Tensor:
        """Pooled kernel features ``(n, P, D)`` of a chunk, before normalization."""
        z, grid = self._patches(x)
        z = (z - self.zca_mean) @ self.zca
        z = z.mul_(1.0 / math.sqrt(x.shape[1]))
        f = self.feature_map(z)
        f, _ = avg_pool_positions(f, grid, self.pool, self.pool_stride)
        return f

    def _features(self, x: Tensor) -> Tensor:
        """Normalized pooled features ``(n, P, D)``."""
        return self._raw_features(x).sub_(self.feat_mean).div_(self.feat_scale)

    def _chunk(self) -> int:
        """Images per feature chunk so that the largest intermediate stays ~_CHUNK_BYTES."""
        c, h, w = self.in_shape
        hp = (h + 2 * self.padding - self.patch) // self.stride + 1
        wp = (w + 2 * self.padding - self.patch) // self.stride + 1
        per_image = hp * wp * max(self.features, c * self.patch ** 2) * 4
        return max(1, _CHUNK_BYTES // per_image)

    def _chunks(self, n: int, size: int | None = None) -> Iterator[slice]:
        size = size or self._chunk()
        for i in range(0, n, size):
            yield slice(i, min(n, i + size))

    def _fit_features(self, x: Tensor, generator: torch.Generator,
                      out: Tensor | None = None) -> None:
        """ZCA statistics, kernel feature map and feature normalization from ``x``; with
        ``out`` ``(N, P, D)``, the raw features are written there on the way."""
        n, c = x.shape[0], x.shape[1]
        d = c * self.patch ** 2
        # Pass 1: covariance of the contrast-normalized training patches (float64 sums).
        s1 = torch.zeros(d, dtype=torch.float64, device=x.device)
        s2 = torch.zeros(d, d, dtype=torch.float64, device=x.device)
        rows = 0
        for sl in self._chunks(n):
            z, grid = self._patches(x[sl])
            z = z.reshape(-1, d)
            rows += z.shape[0]
            s1 += z.sum(0, dtype=torch.float64)
            z64 = z.double()
            s2 += z64.T @ z64
        mean = s1 / rows
        cov = s2 / rows - torch.outer(mean, mean)
        self.zca_mean = mean.float()
        self.zca = zca_matrix(cov, self.zca_eps).float()
        # Kernel feature map on whitened, channel-scaled patches.
        fmap = KERNEL_FEATURES.build(self.kernel, d, self.features, gamma=self.gamma)
        fmap = fmap.to(x.device)
        sample = torch.empty(0, d, device=x.device)
        if self.kernel == "nystrom":
            # Candidate landmarks: patches at random positions of random training images.
            m = 2 * self.features
            img = torch.randint(0, n, (m,), generator=generator).to(x.device)
            pos = torch.randint(0, grid[0] * grid[1], (m,), generator=generator).to(x.device)
            picked = []
            for sl in self._chunks(m):
                z, _ = self._patches(x[img[sl]])
                picked.append(z[torch.arange(z.shape[0], device=x.device), pos[sl]])
            sample = (torch.cat(picked) - self.zca_mean) @ self.zca / math.sqrt(c)
        fmap.fit(sample, generator)
        self.feature_map = fmap
        # Pass 2: feature mean and the global scale (RMS norm of a centred feature vector).
        self.feat_mean = torch.zeros(self.features, device=x.device)
        self.feat_scale = torch.ones((), device=x.device)
        f1 = torch.zeros(self.features, dtype=torch.float64, device=x.device)
        f2 = torch.zeros((), dtype=torch.float64, device=x.device)
        count = 0
        for sl in self._chunks(n):
            f = self._raw_features(x[sl])
            if out is not None:
                out[sl] = f
            f = f.reshape(-1, self.features)
            count += f.shape[0]
            f1 += f.sum(0, dtype=torch.float64)
            f2 += f.double().square().sum()
        fm = f1 / count
        var = (f2 / count - fm.square().sum()).clamp_min(1e-12)
        self.feat_mean = fm.float()
        self.feat_scale = var.sqrt().float()

    # -- convex training ----------------------------------------------------------------------
    def fit(self, x: Tensor, y: Tensor, num_classes: int | None = None,
            x_test: Tensor | None = None, y_test: Tensor | None = None, *,
            generator: torch.Generator | None = None, cache: str = "auto",
            memory_budget: int = 384 * 2**20, eval_every: int = 1,
            on_epoch: Callable[[dict[str, Any]], None] | None = None
            ) -> list[dict[str, Any]]:
        """Train the layer on images ``x`` ``(N, C, H, W)`` with labels ``y`` ``(N,)``.

        Returns one row per evaluated epoch (see :class:`CCNNHistory`). ``cache``:
        ``"auto"`` caches the training features in float16 when they take at most
        ``memory_budget`` bytes (and the test features too when both fit) and streams them
        otherwise; ``"none"`` always streams; ``"float16"``/``"float32"`` always cache both.
        """
        _choice("cache", cache, _CACHES)
        eval_every = _positive_int("eval_every", eval_every)
        x, y, num_classes = _check_xy(x, y, num_classes)
        c, h, w = x.shape[1:]
        if self.patch > h + 2 * self.padding or self.patch > w + 2 * self.padding:
            raise ValueError(
                f"patch={self.patch} does not fit into images of shape {(c, h, w)} with "
                f"padding={self.padding}."
            )
        if x_test is not None:
            x_test, y_test, _ = _check_xy(x_test, y_test, num_classes, "x_test", "y_test")
            if tuple(x_test.shape[1:]) != (c, h, w):
                raise ValueError(
                    f"x_test must have the training images' shape (N, {c}, {h}, {w}). "
                    f"Received: x_test.shape={tuple(x_test.shape)}."
                )
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        self.reset_parameters()
        self.in_shape = (c, h, w)
        dev = x.device
        hp = (h + 2 * self.padding - self.patch) // self.stride + 1
        wp = (w + 2 * self.padding - self.patch) // self.stride + 1
        if self.pool > min(hp, wp):
            raise ValueError(
                f"pool={self.pool} is larger than the {hp} x {wp} grid of patch positions of "
                f"images of shape {(c, h, w)}; use pool <= {min(hp, wp)}."
            )
        self.grid = avg_pool_positions(torch.zeros(1, hp * wp, 1), (hp, wp), self.pool,
                                       self.pool_stride)[1]
        p_count = self.grid[0] * self.grid[1]
        d_feat = self.features
        rank_max = min(num_classes * p_count, d_feat)
        if self.rank > rank_max:
            warnings.warn(
                f"rank={self.rank} exceeds min(K*P, D)={rank_max} for this layer; "
                f"recovering {rank_max} filters.", stacklevel=2)
        n = x.shape[0]
        n_test = 0 if x_test is None else x_test.shape[0]

        # Features: cached (float16/32) when they fit into the budget, else recomputed per
        # mini-batch and per evaluation chunk from the images (streamed).
        per_image = p_count * d_feat
        mode = cache
        if cache == "auto":
            mode = "float16" if 2 * n * per_image <= memory_budget else "none"
        dt = torch.float32 if mode == "float32" else torch.float16
        cached = cached_test = None
        if mode != "none":
            cached = torch.empty(n, p_count, d_feat, dtype=dt, device=dev)
        self._fit_features(x, g, out=cached)
        if cached is not None:
            for sl in self._chunks(n):
                cached[sl] = cached[sl].float().sub_(self.feat_mean).div_(self.feat_scale)
            if n_test and (cache != "auto" or 2 * (n + n_test) * per_image <= memory_budget):
                cached_test = torch.empty(n_test, p_count, d_feat, dtype=dt, device=dev)
                for sl in self._chunks(n_test):
                    cached_test[sl] = self._features(x_test[sl])
        self.cache_mode = mode

        def feats(idx: Tensor | slice) -> Tensor:
            if cached is not None:
                return cached[idx].float()
            return self._features(x[idx])

        def feats_test(idx: Tensor | slice) -> Tensor:
            if cached_test is not None:
                return cached_test[idx].float()
            return self._features(x_test[idx])

        a = torch.zeros(num_classes, p_count * d_feat, device=dev)
        a_sum = torch.zeros_like(a)
        n_avg = 0
        a_bar = a.clone()
        rows: list[dict[str, Any]] = []
        train_time = 0.0
        step = 0
        for epoch in range(1, self.epochs + 1):
            t0 = time.perf_counter()
            if self.average == "epoch":
                a_sum.zero_()
                n_avg = 0
            perm = torch.randperm(n, generator=g).to(dev)
            for i in range(0, n, self.batch_size):
                idx = perm[i:i + self.batch_size]
                z = feats(idx).reshape(idx.shape[0], -1)
                # Gradient of the mean cross-entropy of softmax(z A^T): (p - onehot)^T z / B.
                p = torch.softmax(z @ a.T, dim=1)
                p[torch.arange(idx.shape[0], device=dev), y[idx]] -= 1.0
                a.sub_(p.T @ z, alpha=self.lr / idx.shape[0])
                step += 1
                if step % self.project_every == 0 or i + self.batch_size >= n:
                    # Every project_every steps, and at the end of each epoch, so that the
                    # epoch's iterate (and every average) lies in the ball.
                    a = self._project(a, num_classes, p_count)
                    a_sum += a
                    n_avg += 1
            a_bar = a.clone() if self.average == "none" else a_sum / n_avg
            train_time += time.perf_counter() - t0
            if epoch % eval_every == 0 or epoch == self.epochs:
                self.weight = a_bar.reshape(num_classes, p_count, d_feat)
                obj, err = self._evaluate(x, y, feats)
                row = {"epoch": epoch, "objective": obj, "train_error": err,
                       "nuclear_norm": float(nuclear_norm(a_bar.reshape(-1, d_feat))),
                       "seconds": train_time}
                if x_test is not None:
                    row["test_error"] = self._evaluate(x_test, y_test, feats_test)[1]
                rows.append(row)
                if on_epoch is not None:
                    on_epoch(row)
        cached = cached_test = None  # free the feature caches before the next layer
        self.weight = a_bar.reshape(num_classes, p_count, d_feat)
        mat = self.weight.reshape(-1, d_feat)
        self.singular_values = torch.linalg.svdvals(mat)
        self.filters = recover_filters(mat, min(self.rank, rank_max))
        return rows

    def _project(self, a: Tensor, k: int, p: int) -> Tensor:
        # The nuclear norm is taken of A as a (K*P) x D matrix (class-position rows, feature
        # columns), as in the paper and the authors' code.
        return project_nuclear_ball(a.reshape(k * p, -1), self.radius).reshape(k, -1)

    @torch.no_grad()
    def _evaluate(self, x: Tensor, y: Tensor, feats: Callable | None) -> tuple[float, float]:
        """Mean cross-entropy and error rate of the current ``weight`` on ``(x, y)``."""
        loss, wrong = 0.0, 0
        n = x.shape[0]
        wmat = self.weight.reshape(self.weight.shape[0], -1)
        for sl in self._chunks(n, max(self._chunk(), 1)):
            z = feats(sl) if feats is not None else self._features(x[sl])
            logits = z.reshape(z.shape[0], -1) @ wmat.T
            loss += float(F.cross_entropy(logits, y[sl], reduction="sum"))
            wrong += int((logits.argmax(1) != y[sl]).sum())
        return loss / n, wrong / n

    # -- inference ----------------------------------------------------------------------------
    def _need_fit(self) -> None:
        if not self.fitted:
            raise RuntimeError("CCNNLayer is not fitted: call fit(x, y) first.")

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        """Filter responses ``(N, r, H_p, W_p)``: pooled features times the filters."""
        self._need_fit()
        x = self.check_input(x)
        r = self.filters.shape[0]
        out = torch.empty(x.shape[0], r, *self.grid, device=x.device)
        for sl in self._chunks(x.shape[0]):
            f = self._features(x[sl]) @ self.filters.T  # (n, P, r)
            out[sl] = f.transpose(1, 2).reshape(-1, r, *self.grid)
        return out

    @torch.no_grad()
    def logits(self, x: Tensor) -> Tensor:
        """Class scores ``<Z(x), A_k>`` ``(N, K)`` of the layer's own classifier."""
        self._need_fit()
        x = self.check_input(x)
        wmat = self.weight.reshape(self.weight.shape[0], -1)
        out = torch.empty(x.shape[0], wmat.shape[0], device=x.device)
        for sl in self._chunks(x.shape[0]):
            out[sl] = self._features(x[sl]).reshape(sl.stop - sl.start, -1) @ wmat.T
        return out


def _check_xy(x: Any, y: Any, num_classes: int | None, xn: str = "x", yn: str = "y"
              ) -> tuple[Tensor, Tensor, int]:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"{xn} must be a floating-point torch tensor (N, C, H, W). "
                        f"Received: {type(x).__name__}"
                        f"{'' if not isinstance(x, Tensor) else ' of dtype ' + str(x.dtype)}.")
    if x.ndim != 4 or x.shape[0] < 1:
        raise ValueError(
            f"{xn} must have shape (N, C, H, W) with N >= 1. Received: {xn}.shape="
            f"{tuple(x.shape)}."
        )
    if not isinstance(y, Tensor) or y.ndim != 1 or y.shape[0] != x.shape[0] \
            or y.is_floating_point():
        got = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
        raise ValueError(
            f"{yn} must be integer labels of shape ({x.shape[0]},) to match {xn}.shape="
            f"{tuple(x.shape)}. Received: {yn}.shape={got}."
        )
    if y.min() < 0:
        raise ValueError(f"{yn} must hold labels >= 0. Received: min label {int(y.min())}.")
    k = int(y.max()) + 1
    if num_classes is None:
        num_classes = k
    elif k > num_classes:
        raise ValueError(f"{yn} holds label {k - 1} but num_classes={num_classes}.")
    return x, y.to(device=x.device, dtype=torch.long), num_classes


# -- network ----------------------------------------------------------------------------------
class CCNN(nn.Module):
    """A stack of :class:`CCNNLayer` trained layer by layer (Zhang et al. 2017, Algorithm 2).

    Layer ``l`` is trained as a convex problem on the filter responses of layer ``l-1``
    (the images for the first layer); the last layer's parameter matrix is the classifier.

    Example::

        >>> net = CCNN([CCNNLayer(patch=5, features=500, pool=2, radius=200, rank=16),
        ...             CCNNLayer(patch=5, features=1000, pool=2, radius=500, rank=16,
        ...                       gamma=2.0, lr=1.0)])
        >>> hist = net.fit(x_train, y_train, x_test, y_test)
        >>> net.predict(x_test)

    Args:
        layers: the layers, first to last.
        device: where features and training run (``None``: the input's device).
        cache, memory_budget: how the training features are held (see
            :meth:`CCNNLayer.fit`); between layers only the filter responses are kept,
            in ``between_dtype`` (float32 or float16).
        seed: seeds the random features and mini-batch order.
    """

    def __init__(self, layers: list[CCNNLayer], *, device: str | torch.device | None = None,
                 cache: str = "auto", memory_budget: int = 384 * 2**20, seed: int = 0,
                 eval_every: int = 1, between_dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        layers = list(layers)
        if not layers or not all(isinstance(m, CCNNLayer) for m in layers):
            raise ValueError(
                "layers must be a non-empty list of CCNNLayer. Received: "
                f"{[type(m).__name__ for m in layers]}."
            )
        self.layers = nn.ModuleList(layers)
        self.device = None if device is None else torch.device(device)
        self.cache = _choice("cache", cache, _CACHES)
        self.memory_budget = _positive_int("memory_budget", memory_budget)
        self.seed = seed
        self.eval_every = _positive_int("eval_every", eval_every)
        if between_dtype not in (torch.float32, torch.float16):
            raise ValueError(f"between_dtype must be torch.float32 or torch.float16. "
                             f"Received: between_dtype={between_dtype}.")
        self.between_dtype = between_dtype

    def extra_repr(self) -> str:
        return f"cache={self.cache!r}, memory_budget={self.memory_budget}"

    def fit(self, x: Tensor, y: Tensor, x_test: Tensor | None = None,
            y_test: Tensor | None = None, num_classes: int | None = None,
            on_epoch: Callable[[dict[str, Any]], None] | None = None) -> CCNNHistory:
        """Train every layer in turn; returns the :class:`CCNNHistory`."""
        x, y, num_classes = _check_xy(x, y, num_classes)
        if (x_test is None) != (y_test is None):
            raise ValueError("give both x_test and y_test, or neither.")
        if x_test is not None:
            x_test, y_test, _ = _check_xy(x_test, y_test, num_classes, "x_test", "y_test")
            if x_test.shape[1:] != x.shape[1:]:
                raise ValueError(
                    f"x_test must have the training images' shape (N, "
                    f"{', '.join(map(str, x.shape[1:]))}). Received: x_test.shape="
                    f"{tuple(x_test.shape)}."
                )
        dev = self.device or x.device
        x, y = x.to(dev), y.to(dev)
        if x_test is not None:
            x_test, y_test = x_test.to(dev), y_test.to(dev)
        g = torch.Generator().manual_seed(self.seed)
        hist = CCNNHistory()
        for li, layer in enumerate(self.layers):
            layer.to(dev)

            def hook(row: dict[str, Any], li: int = li) -> None:
                if on_epoch is not None:
                    on_epoch({"layer": li, **row})

            rows = layer.fit(x, y, num_classes, x_test, y_test, generator=g, cache=self.cache,
                             memory_budget=self.memory_budget, eval_every=self.eval_every,
                             on_epoch=hook)
            hist.rows.extend({"layer": li, **r} for r in rows)
            hist.singular_values.append(layer.singular_values.tolist())
            hist.cache.append(layer.cache_mode)
            if li + 1 < len(self.layers):
                # The recovered filters' responses are the next layer's input.
                x = layer(x).to(self.between_dtype)
                if x_test is not None:
                    x_test = layer(x_test).to(self.between_dtype)
        return hist

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        """Class scores ``(N, K)`` from the last layer."""
        if not self.layers[-1].fitted:
            raise RuntimeError("CCNN is not fitted: call fit(x, y) first.")
        x = self.layers[0].check_input(x)
        dev = self.layers[0].zca.device
        x = x.to(dev)
        for layer in self.layers[:-1]:
            x = layer(x).to(self.between_dtype)
        return self.layers[-1].logits(x)

    def predict(self, x: Tensor) -> Tensor:
        """Predicted labels ``(N,)``."""
        return self(x).argmax(1)
