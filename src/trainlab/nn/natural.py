"""Natural neural networks: whitened layers re-estimated without changing the function.

Desjardins, Simonyan, Pascanu & Kavukcuoglu 2015 ("Natural Neural Networks"), the lecture's
"how about decorrelating the activations?". A canonical layer ``h_i = f(W_i h_{i-1} + b_i)``
is written as

    h_i = f(V_i U_{i-1} (h_{i-1} - c_{i-1}) + d_i)

with learned parameters ``Omega = {V_i, d_i}`` and whitening coefficients
``Phi = {U_{i-1}, c_{i-1}}``: ``c`` is the mean of the layer's input and ``U`` a whitening
matrix of its covariance, ``U (Sigma + eps I) U^T = I``. The gradient step on ``V`` then sees
whitened inputs, which brings it close to a natural-gradient step (the Fisher's block for the
layer is near the identity). Every ``T`` steps, ``Phi`` is re-estimated from ``N_s`` samples
and ``Omega`` is projected so that the network computes the same function (the paper's
Algorithm 1, "PRONG"):

    1. canonical parameters   W = V U_old,           b = d - W c_old
    2. new statistics         c = E[h],  Sigma + eps I = E diag(lam) E^T
                              U = diag(lam)^(-1/2) E^T   (PCA whitening, the paper's)
                              U = E diag(lam)^(-1/2) E^T (ZCA, ``whitening="zca"``)
    3. projected parameters   V = W U^(-1),          d = b + W c

so that ``V U (h - c) + d = W h + b`` before and after. ``U^(-1)`` comes from the same
eigendecomposition (``E diag(lam)^(1/2)``), never from a matrix inverse; the algebra runs in
float64. ``eps`` regularizes small eigenvalues; the paper treats it as a hyper-parameter
(there is no single published default; 1e-3 here for inputs of unit scale).

Use: :class:`WhitenedLinear` in place of ``nn.Linear`` (or :func:`to_natural` on any model),
:func:`reestimate_whitening` to re-estimate every whitened layer from data, and
:class:`WhiteningCallback` to do it every ``T`` steps of :class:`trainlab.train.Trainer`.
At construction ``U = I`` and ``c = 0``, so a whitened layer is its canonical Linear.

Registry :data:`NATURAL_NETS` (family ``"whitening"``: ``pca``, the paper's, and ``zca``)
holds both halves as one :class:`NaturalNetwork`: ``NATURAL_NETS.build("pca", every=100)``
converts a model (:meth:`NaturalNetwork.convert`) and makes its re-estimation callback
(:meth:`NaturalNetwork.callback`); a run config's ``model.whitening`` with
``model.whitening_options``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainlab.registry import Registry

__all__ = [
    "NATURAL_NETS",
    "NaturalNetwork",
    "WHITENINGS",
    "WhitenedLinear",
    "WhiteningCallback",
    "reestimate_whitening",
    "to_natural",
    "whitened_linear",
    "whitening_matrices",
]

#: Whitening choices: PCA (the paper's ``U = D^-1/2 E^T``) or ZCA (``E D^-1/2 E^T``).
WHITENINGS = ("pca", "zca")


def _check_eps(eps: Any) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps >= 0 or not (
        math.isfinite(eps)
    ):
        raise ValueError(f"eps must be a finite number >= 0. Received: eps={eps!r}.")
    return float(eps)


def _check_whitening(whitening: Any) -> str:
    w = whitening.strip().lower() if isinstance(whitening, str) else whitening
    if w not in WHITENINGS:
        raise ValueError(
            f"whitening must be one of {WHITENINGS}. Received: whitening={whitening!r}."
        )
    return w


def whitened_linear(x: Tensor, weight: Tensor, bias: Tensor | None, mean: Tensor,
                    whitener: Tensor) -> Tensor:
    """``y = V U (x - c) + d`` with ``V = weight``, ``d = bias``, ``c = mean``, ``U = whitener``
    (over the last dimension of ``x``)."""
    return F.linear(F.linear(x - mean, whitener), weight, bias)


def whitening_matrices(cov: Tensor, eps: float = 1e-3, whitening: str = "pca"
                       ) -> tuple[Tensor, Tensor]:
    """``(U, U^-1)`` for a covariance ``Sigma``: ``U (Sigma + eps I) U^T = I``.

    From the eigendecomposition ``Sigma + eps I = E diag(lam) E^T`` (float64): PCA
    ``U = diag(lam)^-1/2 E^T``, ``U^-1 = E diag(lam)^1/2``; ZCA ``U = E diag(lam)^-1/2 E^T``,
    ``U^-1 = E diag(lam)^1/2 E^T``. Eigenvalues are clamped at a tiny positive value so a
    singular covariance with ``eps = 0`` gives finite (if huge) factors.
    """
    eps = _check_eps(eps)
    whitening = _check_whitening(whitening)
    if cov.dim() != 2 or cov.shape[0] != cov.shape[1]:
        raise ValueError(f"cov must be a square matrix. Received: cov of shape {tuple(cov.shape)}.")
    c64 = cov.double()
    c64 = 0.5 * (c64 + c64.T)  # exact symmetry for eigh
    n = c64.shape[0]
    lam, E = torch.linalg.eigh(c64 + eps * torch.eye(n, dtype=c64.dtype, device=c64.device))
    lam = lam.clamp_min(torch.finfo(c64.dtype).tiny ** 0.5)
    U = lam.rsqrt()[:, None] * E.T
    U_inv = E * lam.sqrt()[None, :]
    if whitening == "zca":
        U, U_inv = E @ U, U_inv @ E.T
    return U, U_inv


class WhitenedLinear(nn.Module):
    """A linear layer on whitened inputs: ``y = V U (x - c) + d`` (Desjardins et al. 2015).

    Parameters ``weight`` (``V``, shape ``(out, in)``) and ``bias`` (``d``); buffers ``mean``
    (``c``, shape ``(in,)``) and ``whitener`` (``U``, shape ``(in, in)``), changed only by
    :meth:`update_whitening_` / :meth:`estimate_`, which keep the function unchanged. Starts
    as ``nn.Linear`` (same init, ``U = I``, ``c = 0``).

    Args:
        in_features, out_features, bias: as ``nn.Linear``.
        eps: added to the covariance's eigenvalues before whitening.
        whitening: ``"pca"`` (the paper's) or ``"zca"``.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 eps: float = 1e-3, whitening: str = "pca", device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__()
        for name, v in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer. Received: {name}={v!r}.")
        self.in_features, self.out_features = in_features, out_features
        self.eps = _check_eps(eps)
        self.whitening = _check_whitening(whitening)
        kw = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(out_features, in_features, **kw))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_features, **kw))
        else:
            self.register_parameter("bias", None)
        self.register_buffer("mean", torch.zeros(in_features, **kw))
        self.register_buffer("whitener", torch.eye(in_features, **kw))
        self.updates = 0  # re-estimations so far
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.Linear``'s init for ``V`` and ``d``; ``U = I``, ``c = 0``."""
        nn.Linear.reset_parameters(self)  # uses self.weight, self.bias, self.in_features
        self.mean.zero_()
        with torch.no_grad():
            self.whitener.copy_(torch.eye(self.in_features, dtype=self.whitener.dtype))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 1 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"WhitenedLinear was built for in_features={self.in_features} (last input "
                f"dim). Received: input of shape {tuple(x.shape)}."
            )
        return whitened_linear(x, self.weight, self.bias, self.mean, self.whitener)

    @torch.no_grad()
    def canonical(self) -> tuple[Tensor, Tensor]:
        """The canonical ``(W, b)`` in float64: ``W = V U``, ``b = d - W c``."""
        W = self.weight.double() @ self.whitener.double()
        d = self.bias.double() if self.bias is not None else torch.zeros(
            self.out_features, dtype=torch.float64, device=W.device)
        return W, d - W @ self.mean.double()

    @torch.no_grad()
    def update_whitening_(self, mean: Tensor, cov: Tensor) -> None:
        """Set ``c = mean`` and ``U`` from ``cov`` and project ``V, d`` so that the layer
        computes the same function (``V = W U^-1``, ``d = b + W c``).

        Without a bias the function can be kept only when the new mean gives ``W c`` equal
        to the old offset, so a bias-free layer keeps ``c = 0`` and only decorrelates.
        """
        if tuple(mean.shape) != (self.in_features,) or tuple(cov.shape) != (self.in_features,) * 2:
            raise ValueError(
                f"mean and cov must have shapes ({self.in_features},) and "
                f"({self.in_features}, {self.in_features}) for in_features={self.in_features}. "
                f"Received: mean of shape {tuple(mean.shape)}, cov of shape {tuple(cov.shape)}."
            )
        W, b = self.canonical()
        U, U_inv = whitening_matrices(cov, self.eps, self.whitening)
        c = mean.double().to(W.device)
        if self.bias is None:  # no d to absorb W c: decorrelate only (c stays 0)
            c = torch.zeros_like(c)
        self.weight.copy_(W @ U_inv.to(W.device))
        if self.bias is not None:
            self.bias.copy_(b + W @ c)
        self.whitener.copy_(U.to(W.device))
        self.mean.copy_(c)
        self.updates += 1

    @torch.no_grad()
    def estimate_(self, x: Tensor) -> None:
        """Re-estimate ``c`` and ``U`` from inputs ``x`` (``(..., in_features)``; biased
        covariance) and reparametrize (:meth:`update_whitening_`)."""
        flat = x.detach().reshape(-1, self.in_features).double()
        if flat.shape[0] < 2:
            raise ValueError(
                "estimate_ needs at least 2 input rows for a covariance. "
                f"Received: x of shape {tuple(x.shape)}."
            )
        mu = flat.mean(0)
        centred = flat - mu
        self.update_whitening_(mu, centred.T @ centred / flat.shape[0])

    @classmethod
    def from_linear(cls, linear: nn.Linear, *, eps: float = 1e-3,
                    whitening: str = "pca") -> WhitenedLinear:
        """A whitened layer with ``linear``'s weights (``U = I``, ``c = 0``): same function."""
        w = linear.weight
        m = cls(linear.in_features, linear.out_features, linear.bias is not None, eps=eps,
                whitening=whitening, device=w.device, dtype=w.dtype)
        with torch.no_grad():
            m.weight.copy_(w)
            if linear.bias is not None:
                m.bias.copy_(linear.bias)
        return m

    def to_linear(self) -> nn.Linear:
        """The canonical ``nn.Linear`` (``W = V U``, ``b = d - W c``): same function."""
        W, b = self.canonical()
        lin = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                        device=self.weight.device, dtype=self.weight.dtype)
        with torch.no_grad():
            lin.weight.copy_(W)
            if lin.bias is not None:
                lin.bias.copy_(b)
        return lin

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, eps={self.eps}, whitening={self.whitening!r}")


def to_natural(model: nn.Module, *, eps: float = 1e-3, whitening: str = "pca",
               skip: Iterable[str] = ()) -> nn.Module:
    """Replace every ``nn.Linear`` in ``model`` (in place) by a :class:`WhitenedLinear` with
    the same weights; the function is unchanged until the first re-estimation. ``skip``:
    qualified names of Linear layers to leave alone. Returns ``model``."""
    skip = set(skip)
    targets = [(n, m) for n, m in model.named_modules()
               if type(m) is nn.Linear and n not in skip]
    if not targets:
        warnings.warn("to_natural found no nn.Linear to whiten in the model.", UserWarning,
                      stacklevel=2)
    for name, lin in targets:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, WhitenedLinear.from_linear(lin, eps=eps, whitening=whitening))
    return model


@torch.no_grad()
def reestimate_whitening(model: nn.Module, x: Tensor, *, batch_size: int = 1024) -> list[str]:
    """Re-estimate every :class:`WhitenedLinear` in ``model`` from the inputs it sees on ``x``.

    One pass of ``x`` through the model in eval mode (dropout off, BN on running statistics,
    no statistics updated) accumulates each whitened layer's input mean and covariance in
    float64; each layer is then reparametrized (:meth:`WhitenedLinear.update_whitening_`).
    Because every layer keeps its function, all layers can be estimated from the one pass.
    Modes are restored afterwards. Returns the names of the layers updated.
    """
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, WhitenedLinear)]
    if not layers:
        raise ValueError(
            "reestimate_whitening found no WhitenedLinear in the model. Use WhitenedLinear "
            "layers or convert the model with trainlab.nn.to_natural(model)."
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer. Received: {batch_size!r}.")
    sums: dict[int, list[Any]] = {id(m): [0, None, None] for _, m in layers}

    def hook(module: WhitenedLinear, args: tuple) -> None:
        flat = args[0].reshape(-1, module.in_features).double()
        s = sums[id(module)]
        s[0] += flat.shape[0]
        s[1] = flat.sum(0) if s[1] is None else s[1] + flat.sum(0)
        s[2] = flat.T @ flat if s[2] is None else s[2] + flat.T @ flat

    modes = [(m, m.training) for m in model.modules()]
    handles = [m.register_forward_pre_hook(hook) for _, m in layers]
    try:
        model.eval()
        for i in range(0, x.shape[0], batch_size):
            model(x[i : i + batch_size])
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes:
            m.train(mode)
    done = []
    for name, m in layers:
        n, s1, s2 = sums[id(m)]
        if n < 2:
            continue
        mu = s1 / n
        m.update_whitening_(mu, s2 / n - torch.outer(mu, mu))
        done.append(name)
    return done


class WhiteningCallback:
    """Re-estimate a model's whitening every ``every`` steps of a Trainer (Algorithm 1).

    At the start of ``fit`` (the paper's ``t = 0``) and then at the first logging point at
    or after each multiple of ``every`` steps, :func:`reestimate_whitening` runs on
    ``num_samples`` examples drawn (without replacement, seeded) from ``x`` or, when ``x`` is
    ``None``, from the trainer's training set (the callback protocol of
    :mod:`trainlab.engine.callbacks`). Callbacks run at logging points only, so make
    ``every`` a multiple of the Trainer's ``log_every`` (a warning says when it is not).
    Each re-estimation keeps the network's function; the optimizer's state (momentum,
    Adam moments) is kept as it is.

    Attributes:
        steps: the training steps at which the whitening was re-estimated.
    """

    def __init__(self, every: int = 100, num_samples: int = 1024, x: Tensor | None = None,
                 seed: int = 0) -> None:
        for name, v in (("every", every), ("num_samples", num_samples)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer. Received: {name}={v!r}.")
        self.every, self.num_samples, self.x = every, num_samples, x
        self.generator = torch.Generator().manual_seed(seed)
        self.steps: list[int] = []
        self._next = 0

    def _samples(self, trainer: Any) -> Tensor:
        x = self.x if self.x is not None else trainer.batcher.x
        n = min(self.num_samples, x.shape[0])
        idx = torch.randperm(x.shape[0], generator=self.generator)[:n]
        device = next(trainer.model.parameters()).device
        return x[idx.to(x.device)].to(device)

    def _reestimate(self, trainer: Any) -> None:
        reestimate_whitening(trainer.model, self._samples(trainer))
        self.steps.append(int(trainer.step))
        self._next = (trainer.step // self.every + 1) * self.every

    def on_fit_begin(self, trainer: Any) -> None:
        log_every = getattr(trainer, "log_every", 1)
        if self.every % log_every:
            warnings.warn(
                f"WhiteningCallback(every={self.every}) runs at logging points only and the "
                f"Trainer logs every {log_every} steps: re-estimations will come at the first "
                f"logging point after each multiple of {self.every}. Use a multiple of "
                f"log_every.", UserWarning, stacklevel=2)
        if trainer.step >= self._next:
            self._reestimate(trainer)

    def on_log(self, trainer: Any, row: dict[str, Any]) -> None:
        if trainer.step >= self._next and trainer.step < getattr(trainer, "total_steps", math.inf):
            self._reestimate(trainer)

    def state_dict(self) -> dict[str, Any]:
        return {"steps": list(self.steps), "next": self._next,
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps, self._next = list(state["steps"]), state["next"]
        self.generator.set_state(state["generator"])


class NaturalNetwork:
    """A natural neural network's recipe (Desjardins et al. 2015, Algorithm 1): which
    whitening, its ``eps``, and how often (``every`` steps, from ``num_samples`` examples)
    the whitening is re-estimated.

    :meth:`convert` turns a model's ``nn.Linear`` layers into :class:`WhitenedLinear`
    (:func:`to_natural`, same function); :meth:`callback` gives the
    :class:`WhiteningCallback` that re-estimates them during training. ``skip``: qualified
    names of Linear layers to leave canonical.
    """

    def __init__(self, whitening: str = "pca", *, eps: float = 1e-3, every: int = 100,
                 num_samples: int = 1024, skip: Iterable[str] = ()) -> None:
        self.whitening = _check_whitening(whitening)
        self.eps = _check_eps(eps)
        for name, v in (("every", every), ("num_samples", num_samples)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer. Received: {name}={v!r}.")
        if isinstance(skip, str) or not all(isinstance(n, str) for n in skip):
            raise ValueError(f"skip must be a list of layer names. Received: skip={skip!r}.")
        self.every, self.num_samples, self.skip = every, num_samples, tuple(skip)

    def convert(self, model: nn.Module) -> nn.Module:
        """:func:`to_natural` on ``model`` (in place); returns ``model``."""
        return to_natural(model, eps=self.eps, whitening=self.whitening, skip=self.skip)

    def callback(self, seed: int = 0, x: Tensor | None = None) -> WhiteningCallback:
        """The callback re-estimating the whitening every ``every`` steps of a Trainer."""
        return WhiteningCallback(self.every, self.num_samples, x=x, seed=seed)

    def __repr__(self) -> str:
        return (f"NaturalNetwork({self.whitening!r}, eps={self.eps}, every={self.every}, "
                f"num_samples={self.num_samples}, skip={list(self.skip)})")


def _natural(whitening: str):
    def build(*, eps: float = 1e-3, every: int = 100, num_samples: int = 1024,
              skip: Iterable[str] = ()) -> NaturalNetwork:
        return NaturalNetwork(whitening, eps=eps, every=every, num_samples=num_samples,
                              skip=skip)

    build.__name__ = build.__qualname__ = f"natural_{whitening}"
    build.__doc__ = f"A :class:`NaturalNetwork` with {whitening.upper()} whitening."
    return build


#: Family ``"whitening"``: the whitening of a natural neural network -> a
#: :class:`NaturalNetwork` (its options: ``eps``, ``every``, ``num_samples``, ``skip``).
NATURAL_NETS = Registry("whitening")
NATURAL_NETS.add(
    "pca", _natural("pca"),
    description="natural network: each Linear sees U(h - c), U = D^-1/2 E^T of its input's "
                "covariance, re-estimated every `every` steps keeping the function",
    reference="Desjardins, Simonyan, Pascanu & Kavukcuoglu 2015, Natural Neural Networks "
              "(PRONG)",
    aliases=("prong", "natural", "pca_whitening"),
    meta={"whitening": "pca"},
)
NATURAL_NETS.add(
    "zca", _natural("zca"),
    description="natural network with ZCA whitening U = E D^-1/2 E^T (otherwise as pca)",
    reference="Desjardins et al. 2015; Bell & Sejnowski 1997 (ZCA)",
    aliases=("prong_zca", "zca_whitening"),
    meta={"whitening": "zca"},
)
