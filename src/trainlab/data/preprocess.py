"""Data preprocessing fitted on training data (lectures 001 and 003).

Lecture 001, "Data preprocessing" (``X`` is ``N x D``, one example per row): subtract the
mean image (AlexNet), or the per-channel mean (VGG), or subtract the per-channel mean and
divide by the per-channel std (ResNet); PCA and whitening are possible but "not common" for
images. Lecture 003: mean cancellation, decorrelation (Karhunen-Loeve) and scaling;
``Cov(X) = X^T X / N`` on centred data and ``X_hat = Cov^(-1/2) X`` so that
``Cov(X_hat) = I``.

Every preprocessor is fitted on training data (:meth:`Preprocessor.fit`), applied to any
split (:meth:`~Preprocessor.transform`, or call it), and saved and restored with a run
(:meth:`~Preprocessor.state_dict`, :func:`load_preprocessor`). Statistics are computed in
float64 and applied in the input's dtype on the input's device.

=================  =====================================================================
name               what it does
=================  =====================================================================
``center``         ``x - mean``; ``mode``: ``"feature"`` (= ``"image"``: the mean image),
                   ``"channel"`` (dim 1 of ``(N, C, ...)``), ``"scalar"`` (one number)
``standardize``    ``(x - mean) / std`` per feature or per channel (``std <= eps`` -> 1)
``pca``            centred data projected on the top ``n_components`` principal axes
                   (an int, or a fraction of variance to keep) -> ``(N, k)``
``pca_whiten``     PCA, each component divided by ``sqrt(lambda + eps)`` -> ``(N, k)``
``zca``            ``Cov^(-1/2) (x - mean)`` with ``Cov^(-1/2) = U diag((lambda + eps)^(-1/2))
                   U^T``: whitened, closest to the input, same shape as the input
``identity``       nothing (placeholder in configs)
=================  =====================================================================

Pipelines: ``build_preprocessor(["center", ("zca", {"eps": 1e-2})])``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from trainlab.data.base import Dataset
from trainlab.registry import Registry

__all__ = [
    "PREPROCESSORS",
    "Preprocessor",
    "Center",
    "Standardize",
    "PCA",
    "ZCA",
    "Identity",
    "Pipeline",
    "build_preprocessor",
    "load_preprocessor",
    "preprocess_dataset",
]

PREPROCESSORS = Registry("preprocess")


def _check_x(x: Any, arg: str = "x") -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{arg} must be a torch tensor. Received: {type(x).__name__}.")
    if x.ndim < 2 or x.shape[0] < 1:
        raise ValueError(
            f"{arg} must have shape (N, ...) with N >= 1 examples. Received: {arg}.shape="
            f"{tuple(x.shape)}."
        )
    if not x.is_floating_point():
        raise TypeError(f"{arg} must be a floating-point tensor. Received: dtype={x.dtype}.")
    return x


def _check_eps(eps: Any) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) \
            or eps < 0:
        raise ValueError(f"eps must be a finite number >= 0. Received: eps={eps!r}.")
    return float(eps)


class Preprocessor:
    """Base class: ``fit(x_train) -> self``, ``transform(x)``, ``state_dict()``.

    Subclasses set ``name``, implement ``_fit(x64)`` (statistics from float64 data of shape
    ``(N, *shape)``) and ``_transform(x)``, and list their tensors in ``_stats``.
    """

    name = "preprocessor"
    _stats: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.fitted_shape: tuple[int, ...] | None = None

    # -- public API ---------------------------------------------------------------------------
    def fit(self, x: torch.Tensor) -> Preprocessor:
        """Compute the statistics from training data ``x`` of shape ``(N, ...)``."""
        x = _check_x(x)
        self.fitted_shape = tuple(x.shape[1:])
        self._fit(x.detach().to(torch.float64))
        return self

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the fitted transform to ``x`` (any split) of shape ``(N, *fitted_shape)``."""
        self._check_ready(x)
        return self._transform(x)

    def inverse_transform(self, x: torch.Tensor) -> torch.Tensor:
        """Undo :meth:`transform` (exactly, or the best reconstruction for PCA)."""
        if self.fitted_shape is None:
            raise RuntimeError(f"{self.name} is not fitted: call fit(x_train) first.")
        return self._inverse(x)

    def fit_transform(self, x: torch.Tensor) -> torch.Tensor:
        return self.fit(x).transform(x)

    __call__ = transform

    @property
    def fitted(self) -> bool:
        return self.fitted_shape is not None

    def output_shape(self) -> tuple[int, ...]:
        """Shape of one transformed example."""
        if self.fitted_shape is None:
            raise RuntimeError(f"{self.name} is not fitted: call fit(x_train) first.")
        return self.fitted_shape

    def config(self) -> dict[str, Any]:
        """Constructor arguments (saved with the statistics)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "config": self.config(),
            "fitted_shape": self.fitted_shape,
            "stats": {k: getattr(self, k) for k in self._stats if getattr(self, k) is not None},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("name") != self.name:
            raise ValueError(
                f"cannot load a {state.get('name')!r} state into a {self.name!r} preprocessor."
            )
        self.fitted_shape = None if state["fitted_shape"] is None else tuple(state["fitted_shape"])
        for k, v in state["stats"].items():
            setattr(self, k, v)

    def to(self, device: str | torch.device) -> Preprocessor:
        for k in self._stats:
            v = getattr(self, k)
            if isinstance(v, torch.Tensor):
                setattr(self, k, v.to(device))
        return self

    def __repr__(self) -> str:
        cfg = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        state = f"fitted on {self.fitted_shape}" if self.fitted else "not fitted"
        return f"{type(self).__name__}({cfg}) [{state}]"

    # -- helpers --------------------------------------------------------------------------------
    def _check_ready(self, x: Any) -> None:
        if self.fitted_shape is None:
            raise RuntimeError(f"{self.name} is not fitted: call fit(x_train) first.")
        x = _check_x(x)
        if tuple(x.shape[1:]) != self.fitted_shape:
            raise ValueError(
                f"{self.name} was fitted on examples of shape {self.fitted_shape} but received "
                f"x.shape={tuple(x.shape)} (examples of shape {tuple(x.shape[1:])})."
            )

    @staticmethod
    def _like(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return t.to(device=x.device, dtype=x.dtype)

    def _fit(self, x: torch.Tensor) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _transform(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _inverse(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{self.name} has no inverse transform.")


_MODES = ("feature", "image", "channel", "scalar")


def _reduce_dims(mode: str, x: torch.Tensor) -> tuple[int, ...]:
    if mode in ("feature", "image"):
        return (0,)
    if mode == "channel":
        if x.ndim < 3:
            raise ValueError(
                "mode='channel' needs inputs of shape (N, C, ...) with at least one spatial "
                f"dimension. Received: x.shape={tuple(x.shape)}."
            )
        return (0, *range(2, x.ndim))
    return tuple(range(x.ndim))


def _check_mode(mode: Any, allowed: tuple[str, ...]) -> str:
    if mode not in allowed:
        raise ValueError(f"mode must be one of {allowed}. Received: mode={mode!r}.")
    return mode


class Center(Preprocessor):
    """Mean cancellation ``x - mean`` (lecture 001: mean image / per-channel mean).

    ``mode="feature"`` (alias ``"image"``) subtracts the mean example (the mean image),
    ``"channel"`` one mean per channel of ``(N, C, ...)`` inputs, ``"scalar"`` one number.
    """

    name = "center"
    _stats = ("mean",)

    def __init__(self, mode: str = "feature") -> None:
        super().__init__()
        self.mode = _check_mode(mode, _MODES)
        self.mean: torch.Tensor | None = None

    def config(self) -> dict[str, Any]:
        return {"mode": self.mode}

    def _fit(self, x: torch.Tensor) -> None:
        self.mean = x.mean(dim=_reduce_dims(self.mode, x), keepdim=True)[0]

    def _transform(self, x: torch.Tensor) -> torch.Tensor:
        return x - self._like(self.mean, x)

    def _inverse(self, x: torch.Tensor) -> torch.Tensor:
        return x + self._like(self.mean, x)


class Standardize(Preprocessor):
    """``(x - mean) / std`` per feature, per channel or globally (lecture 001, ResNet recipe).

    ``std`` is the population standard deviation of the training data; features whose std is
    ``<= eps`` (constant pixels such as MNIST's borders) are only centred.
    """

    name = "standardize"
    _stats = ("mean", "std")

    def __init__(self, mode: str = "feature", eps: float = 1e-8) -> None:
        super().__init__()
        self.mode = _check_mode(mode, _MODES)
        self.eps = _check_eps(eps)
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None

    def config(self) -> dict[str, Any]:
        return {"mode": self.mode, "eps": self.eps}

    def _fit(self, x: torch.Tensor) -> None:
        dims = _reduce_dims(self.mode, x)
        self.mean = x.mean(dim=dims, keepdim=True)[0]
        std = x.std(dim=dims, keepdim=True, correction=0)[0]
        self.std = torch.where(std > self.eps, std, torch.ones_like(std))

    def _transform(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self._like(self.mean, x)) / self._like(self.std, x)

    def _inverse(self, x: torch.Tensor) -> torch.Tensor:
        return x * self._like(self.std, x) + self._like(self.mean, x)


def _eig_cov(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean, eigenvalues (descending) and eigenvectors (columns) of ``Cov = Xc^T Xc / N``."""
    flat = x.reshape(len(x), -1)
    mean = flat.mean(0)
    xc = flat - mean
    cov = xc.T @ xc / len(x)
    evals, evecs = torch.linalg.eigh(cov)
    evals, evecs = evals.flip(0).clamp_min(0), evecs.flip(1)
    return mean, evals, evecs


class PCA(Preprocessor):
    """Projection of centred data on the top principal axes (Karhunen-Loeve, lecture 003).

    ``y = (x - mean) U_k`` where the columns of ``U_k`` are the eigenvectors of
    ``Cov = Xc^T Xc / N`` with the ``k`` largest eigenvalues. ``n_components`` is ``k`` (int)
    or the fraction of variance to keep (float in ``(0, 1]``: the smallest ``k`` whose
    eigenvalues sum to at least that fraction). With ``whiten=True`` each component is divided
    by ``sqrt(lambda + eps)`` (PCA whitening), so the training outputs have covariance ~ ``I``.
    Output shape ``(N, k)``.
    """

    name = "pca"
    _stats = ("mean", "components", "eigenvalues")

    def __init__(
        self, n_components: int | float | None = None, whiten: bool = False, eps: float = 1e-5
    ) -> None:
        super().__init__()
        nc = n_components
        if nc is not None and (
            isinstance(nc, bool)
            or not isinstance(nc, (int, float))
            or (isinstance(nc, int) and nc < 1)
            or (isinstance(nc, float) and not 0 < nc <= 1)
        ):
            raise ValueError(
                "n_components must be an integer >= 1, a variance fraction in (0, 1], or None "
                f"(all). Received: n_components={nc!r}."
            )
        self.n_components = nc
        self.whiten = bool(whiten)
        self.eps = _check_eps(eps)
        self.mean: torch.Tensor | None = None
        self.components: torch.Tensor | None = None  # (D, k)
        self.eigenvalues: torch.Tensor | None = None  # (k,)

    def config(self) -> dict[str, Any]:
        return {"n_components": self.n_components, "whiten": self.whiten, "eps": self.eps}

    def _fit(self, x: torch.Tensor) -> None:
        mean, evals, evecs = _eig_cov(x)
        d = len(evals)
        nc = self.n_components
        if nc is None:
            k = d
        elif isinstance(nc, float):
            frac = evals.cumsum(0) / evals.sum().clamp_min(1e-300)
            k = int((frac < nc - 1e-12).sum().item()) + 1
        else:
            if nc > d:
                self.fitted_shape = None
                raise ValueError(
                    f"n_components must be <= the number of features {d}. "
                    f"Received: n_components={nc}."
                )
            k = nc
        self.mean, self.components, self.eigenvalues = mean, evecs[:, :k], evals[:k]

    def output_shape(self) -> tuple[int, ...]:
        super().output_shape()
        return (self.components.shape[1],)

    def _scale(self, x: torch.Tensor) -> torch.Tensor:
        return self._like((self.eigenvalues + self.eps).rsqrt(), x)

    def _transform(self, x: torch.Tensor) -> torch.Tensor:
        y = (x.reshape(len(x), -1) - self._like(self.mean, x)) @ self._like(self.components, x)
        return y * self._scale(x) if self.whiten else y

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        if self.whiten:
            y = y / self._scale(y)
        x = y @ self._like(self.components, y).T + self._like(self.mean, y)
        return x.reshape(len(y), *self.fitted_shape)


class ZCA(Preprocessor):
    """ZCA whitening ``x_hat = Cov^(-1/2) (x - mean)`` (lecture 003: ``Cov(x_hat) = I``).

    ``Cov^(-1/2) = U diag((lambda + eps)^(-1/2)) U^T`` from the eigendecomposition of
    ``Cov = Xc^T Xc / N``. Among all whitening matrices this one keeps the output closest to
    the input (Bell & Sejnowski 1997), so images still look like images. ``eps`` damps the
    smallest-variance directions (``eps = 0`` gives exact identity covariance on full-rank
    data). Output has the input's shape.
    """

    name = "zca"
    _stats = ("mean", "whitening", "coloring")

    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = _check_eps(eps)
        self.mean: torch.Tensor | None = None
        self.whitening: torch.Tensor | None = None
        self.coloring: torch.Tensor | None = None

    def config(self) -> dict[str, Any]:
        return {"eps": self.eps}

    def _fit(self, x: torch.Tensor) -> None:
        mean, evals, evecs = _eig_cov(x)
        if self.eps == 0 and bool((evals <= 0).any()):
            self.fitted_shape = None
            raise ValueError(
                "the training covariance is singular (some feature is constant or a linear "
                f"combination of others) and eps=0; use eps > 0. Smallest eigenvalue: "
                f"{evals.min().item():.3g}."
            )
        lam = evals + self.eps
        self.mean = mean
        self.whitening = (evecs * lam.rsqrt()) @ evecs.T
        self.coloring = (evecs * lam.sqrt()) @ evecs.T

    def _transform(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(len(x), -1) - self._like(self.mean, x)
        return (flat @ self._like(self.whitening, x)).reshape(x.shape)

    def _inverse(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(len(x), -1) @ self._like(self.coloring, x) + self._like(self.mean, x)
        return flat.reshape(x.shape)


class Identity(Preprocessor):
    """No preprocessing."""

    name = "identity"

    def _fit(self, x: torch.Tensor) -> None:
        pass

    def _transform(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def _inverse(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Pipeline(Preprocessor):
    """Steps applied in order; ``fit`` fits each step on the previous step's output."""

    name = "pipeline"

    def __init__(self, steps: Sequence[Preprocessor]) -> None:
        super().__init__()
        for s in steps:
            if not isinstance(s, Preprocessor):
                raise TypeError(
                    f"pipeline steps must be preprocessors. Received: {s!r} of type "
                    f"{type(s).__name__}."
                )
        self.steps = list(steps)

    def config(self) -> dict[str, Any]:
        return {"steps": [s.name for s in self.steps]}

    def _fit(self, x: torch.Tensor) -> None:
        x = x.to(torch.float64)
        for s in self.steps:
            x = s.fit(x).transform(x)

    def _transform(self, x: torch.Tensor) -> torch.Tensor:
        for s in self.steps:
            x = s.transform(x)
        return x

    def _inverse(self, x: torch.Tensor) -> torch.Tensor:
        for s in reversed(self.steps):
            x = s.inverse_transform(x)
        return x

    def output_shape(self) -> tuple[int, ...]:
        super().output_shape()
        return self.steps[-1].output_shape() if self.steps else self.fitted_shape

    def state_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "config": {},
            "fitted_shape": self.fitted_shape,
            "steps": [s.state_dict() for s in self.steps],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("name") != self.name or len(state["steps"]) != len(self.steps):
            raise ValueError(
                f"cannot load this state into {self!r}: expected a pipeline of "
                f"{len(self.steps)} steps."
            )
        self.fitted_shape = None if state["fitted_shape"] is None else tuple(state["fitted_shape"])
        for s, st in zip(self.steps, state["steps"]):
            s.load_state_dict(st)

    def to(self, device: str | torch.device) -> Pipeline:
        for s in self.steps:
            s.to(device)
        return self

    def __repr__(self) -> str:
        return "Pipeline([" + ", ".join(repr(s) for s in self.steps) + "])"


PREPROCESSORS.add("center", Center, description="subtract the training mean (image/channel/"
                  "scalar)", reference="lecture 001 (AlexNet mean image, VGG per-channel mean)",
                  aliases=("centre", "mean_cancellation"))
PREPROCESSORS.add("center_channel", Center, description="subtract the per-channel mean",
                  reference="lecture 001 (VGG)", defaults={"mode": "channel"})
PREPROCESSORS.add("center_scalar", Center, description="subtract one global mean",
                  reference="lecture 001", defaults={"mode": "scalar"})
PREPROCESSORS.add("standardize", Standardize, description="(x - mean) / std per feature",
                  reference="lecture 001, lecture 003 (scaling)",
                  aliases=("standardise", "zscore"))
PREPROCESSORS.add("standardize_channel", Standardize, description="(x - mean) / std per "
                  "channel", reference="lecture 001 (ResNet)", defaults={"mode": "channel"})
PREPROCESSORS.add("pca", PCA, description="project on the top principal components",
                  reference="lecture 001, lecture 003 (Karhunen-Loeve)")
PREPROCESSORS.add("pca_whiten", PCA, description="PCA whitening: components / sqrt(lambda+eps)",
                  reference="lecture 001", defaults={"whiten": True},
                  aliases=("whiten_pca",))
PREPROCESSORS.add("zca", ZCA, description="ZCA whitening Cov^(-1/2)(x - mean)",
                  reference="lecture 003 (decorrelation); Bell & Sejnowski 1997",
                  aliases=("whiten_zca", "whiten"))
PREPROCESSORS.add("identity", Identity, description="no preprocessing", aliases=("none",))


def build_preprocessor(spec: Any) -> Preprocessor:
    """A preprocessor from a spec: a name, ``(name, kwargs)``, ``{"name": ..., **kwargs}``, a
    :class:`Preprocessor`, or a list of these (a :class:`Pipeline`). ``None`` -> identity."""
    if spec is None:
        return Identity()
    if isinstance(spec, Preprocessor):
        return spec
    if isinstance(spec, list) or (
        isinstance(spec, tuple) and not (len(spec) == 2 and isinstance(spec[0], str))
    ):
        return Pipeline([build_preprocessor(s) for s in spec])
    out = PREPROCESSORS.build(spec)
    if not isinstance(out, Preprocessor):
        raise TypeError(f"preprocess spec {spec!r} did not build a Preprocessor: got {out!r}.")
    return out


def load_preprocessor(state: dict[str, Any]) -> Preprocessor:
    """Rebuild a fitted preprocessor (or pipeline) from :meth:`Preprocessor.state_dict`."""
    if not isinstance(state, dict) or "name" not in state:
        raise ValueError(f"not a preprocessor state: {type(state).__name__} without 'name'.")
    if state["name"] == "pipeline":
        p = Pipeline([load_preprocessor(s) for s in state["steps"]])
        p.fitted_shape = None if state["fitted_shape"] is None else tuple(state["fitted_shape"])
        return p
    cls = {c.name: c for c in (Center, Standardize, PCA, ZCA, Identity)}.get(state["name"])
    if cls is None:
        raise ValueError(f"unknown preprocessor in state: {state['name']!r}.")
    p = cls(**state["config"])
    p.load_state_dict(state)
    return p


def preprocess_dataset(dataset: Any, spec: Any) -> tuple[Any, Preprocessor]:
    """Fit ``spec`` on ``dataset.x_train``, transform both splits, and return the new
    :class:`~trainlab.data.Dataset` (its ``meta.input_shape`` updated, e.g. ``(k,)`` after PCA)
    with the fitted preprocessor (save its ``state_dict()`` with the run)."""
    import dataclasses


    pre = build_preprocessor(spec).fit(dataset.x_train)
    x_train, x_test = pre.transform(dataset.x_train), pre.transform(dataset.x_test)
    meta = dataclasses.replace(
        dataset.meta,
        input_shape=tuple(x_train.shape[1:]),
        extra={**dataset.meta.extra, "preprocess": repr(pre)},
    )
    return Dataset(x_train, dataset.y_train, x_test, dataset.y_test, meta), pre
