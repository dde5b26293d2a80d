"""Optimizers beyond first order: L-BFGS, Newton's method and the natural gradient.

Lecture 002 ("Newton or quasi-Newton", "natural gradient: inverse of FIM") and lecture 003
("second order methods?") contrast first-order descent with steps preconditioned by the
curvature:

- **Newton** (exact): ``w <- w - μ (H + λI)^{-1} g`` with ``H = ∇²L(w)`` the Hessian and a
  damping ``λ`` (Levenberg) that keeps the system solvable where ``H`` is singular or
  indefinite. One step minimizes a quadratic exactly (``μ = 1``). Cost: the ``P × P``
  Hessian (one batched backward pass over the ``P`` gradient components) and an ``O(P³)``
  solve per step — for small models and 2-D functions only; more than ``max_params``
  parameters is refused.
- **Natural gradient** (Amari 1998): ``w <- w - μ (F + λI)^{-1} g`` with ``F`` the Fisher
  information matrix of the model's likelihood. Two estimates, chosen by ``fisher``:
  ``"gauss_newton"`` — the closure returns the residuals ``r_i`` of a Gaussian model
  (loss ``½ mean r_i²``); then ``F = mean ∇r_i ∇r_iᵀ``, the exact Fisher of ``y ~ N(f(x), 1)``,
  which is the Gauss–Newton matrix (this is how NGD applies to least-squares surfaces such as
  Rosenbrock's ``(1 - x)² + 100 (y - x²)²``). ``"empirical"`` — the closure returns the
  per-example negative log-likelihoods ``ℓ_i`` (loss ``mean ℓ_i``); then
  ``F = mean ∇ℓ_i ∇ℓ_iᵀ`` (the empirical Fisher; Kunstner et al. 2019 show where it departs
  from the true one). Same cost as Newton.
- **L-BFGS** (Liu & Nocedal 1989): ``torch.optim.LBFGS`` by name, a quasi-Newton method that
  builds an approximation of ``H^{-1}`` from the last ``history_size`` steps.

All three take a closure in ``step(closure)``. What the closure does is the optimizer's
``closure_kind``: ``"backward"`` (L-BFGS, torch's convention: zero the gradients, compute the
loss, call ``backward()``, return the loss), ``"loss"`` (Newton: return the loss with its
graph, no ``backward()``) or ``"per_example"`` (natural gradient: return the vector of
residuals or per-example losses). :class:`trainlab.train.Trainer` builds the right closure
for each.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from trainlab.optim.optimizers import OPTIMIZERS, _params, check_lr

__all__ = ["NaturalGradient", "Newton", "lbfgs", "natural_gradient", "newton"]


def _flat(ts: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in ts])


def _check(name: str, value: Any, low: float, inclusive: bool = True) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (
        value >= low if inclusive else value > low)
    if not ok:
        rel = ">=" if inclusive else ">"
        raise ValueError(f"{name} must be a number {rel} {low}. Received: {name}={value!r}.")
    return float(value)


class _Preconditioned(torch.optim.Optimizer):
    """Shared parts: one parameter group, a size limit, the damped solve and the update."""

    closure_kind = "loss"

    def __init__(self, params: Any, lr: float, damping: float, max_params: int) -> None:

        check_lr(lr)
        _check("damping", damping, 0.0)
        params = _params(params)
        if isinstance(max_params, bool) or not isinstance(max_params, int) or max_params < 1:
            raise ValueError(f"max_params must be an integer >= 1. Received: "
                             f"max_params={max_params!r}.")
        super().__init__(params, {"lr": lr, "damping": damping})
        if len(self.param_groups) != 1:
            raise ValueError(f"{type(self).__name__} takes one parameter group. Received "
                             f"{len(self.param_groups)}.")
        self.params = [p for p in self.param_groups[0]["params"] if p.requires_grad]
        n = sum(p.numel() for p in self.params)
        if n > max_params:
            raise ValueError(
                f"{type(self).__name__} builds the full {n} × {n} curvature matrix; it is for "
                f"models of at most max_params={max_params} parameters. Received a model "
                f"with {n}. Use 'lbfgs' (or raise max_params) for larger ones.")
        self.n_params = n

    def _apply(self, g: torch.Tensor, curvature: torch.Tensor) -> torch.Tensor:
        group = self.param_groups[0]
        lam = group["damping"]
        a = curvature + lam * torch.eye(len(g), dtype=g.dtype, device=g.device)
        try:
            step = torch.linalg.solve(a, g)
        except RuntimeError:  # singular even after damping: least squares
            step = torch.linalg.lstsq(a, g.unsqueeze(1)).solution.squeeze(1)
        with torch.no_grad():
            i = 0
            for p in self.params:
                k = p.numel()
                p.add_(step[i:i + k].view_as(p), alpha=-group["lr"])
                i += k
        self.state["last"] = {"step_norm": float(step.norm()) * group["lr"]}
        return step


class Newton(_Preconditioned):
    """Damped Newton's method ``w <- w - lr (H + damping·I)^{-1} g``; see the module docstring.

    Args:
        params: the parameters (one group, at most ``max_params`` elements in all).
        lr: step multiplier (1 = the full Newton step).
        damping: ``λ ≥ 0`` added to the Hessian's diagonal.
        max_params: refuse larger models (the Hessian has ``P²`` entries).

    ``step(closure)``: ``closure()`` returns the loss with its graph (no ``backward()``).
    After the step the parameters' ``.grad`` hold the gradient at the old point.
    """

    closure_kind = "loss"

    def __init__(self, params: Any, lr: float = 1.0, damping: float = 1e-4,
                 max_params: int = 4096) -> None:
        super().__init__(params, lr, damping, max_params)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor:
        if closure is None:
            raise ValueError("Newton.step needs a closure that returns the loss.")
        with torch.enable_grad():
            loss = closure()
            grads = torch.autograd.grad(loss, self.params, create_graph=True)
            g = _flat(list(grads))
            eye = torch.eye(len(g), dtype=g.dtype, device=g.device)
            try:  # one batched backward pass for all P rows of the Hessian
                rows = torch.autograd.grad(g, self.params, grad_outputs=eye,
                                           is_grads_batched=True, allow_unused=True)
            except RuntimeError:  # an op without a batching rule: row by row
                rows = None
            if rows is not None:
                h = torch.cat([torch.zeros(len(g), p.numel(), dtype=g.dtype, device=g.device)
                               if r is None else r.reshape(len(g), -1)
                               for r, p in zip(rows, self.params)], dim=1)
            else:
                h = torch.stack([_flat([torch.zeros_like(p) if r is None else r
                                        for r, p in zip(torch.autograd.grad(
                                            g[i], self.params, retain_graph=True,
                                            allow_unused=True), self.params)])
                                 for i in range(len(g))])
        h = (h + h.T) / 2  # symmetric up to rounding
        g = g.detach()
        for p, gr in zip(self.params, grads):
            p.grad = gr.detach().clone()
        self._apply(g, h.detach())
        return loss.detach()


class NaturalGradient(_Preconditioned):
    """Natural gradient descent ``w <- w - lr (F + damping·I)^{-1} g``; see the module docstring.

    Args:
        params: the parameters (one group, at most ``max_params`` elements).
        lr: step size.
        damping: ``λ ≥ 0`` added to the Fisher's diagonal (the Fisher of ``N`` examples has
            rank at most ``N``, so some damping is usually needed).
        fisher: ``"empirical"`` (the closure returns per-example negative log-likelihoods)
            or ``"gauss_newton"`` (the closure returns residuals of a unit-variance Gaussian
            model; the loss is ``½ mean r²``).
        max_params: refuse larger models.

    ``step(closure)`` returns the mean loss; ``.grad`` holds the gradient at the old point.
    """

    closure_kind = "per_example"

    def __init__(self, params: Any, lr: float = 0.1, damping: float = 1e-2,
                 fisher: str = "empirical", max_params: int = 4096) -> None:
        if fisher not in ("empirical", "gauss_newton"):
            raise ValueError("fisher must be one of ('empirical', 'gauss_newton'). "
                             f"Received: fisher={fisher!r}.")
        self.fisher = fisher
        super().__init__(params, lr, damping, max_params)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor:
        if closure is None:
            raise ValueError("NaturalGradient.step needs a closure that returns the vector of "
                             "per-example losses (or residuals).")
        with torch.enable_grad():
            terms = closure()
            if not isinstance(terms, torch.Tensor) or terms.dim() != 1:
                shape = tuple(terms.shape) if isinstance(terms, torch.Tensor) else type(terms)
                raise ValueError("the natural gradient's closure must return a 1-D tensor of "
                                 f"per-example terms. Received shape {shape}.")
            n = terms.shape[0]
            eye = torch.eye(n, dtype=terms.dtype, device=terms.device)
            rows = torch.autograd.grad(terms, self.params, grad_outputs=eye,
                                       is_grads_batched=True, allow_unused=True)
        jac = torch.cat([torch.zeros(n, p.numel(), dtype=terms.dtype, device=terms.device)
                         if r is None else r.reshape(n, -1)
                         for r, p in zip(rows, self.params)], dim=1)  # N x P
        t = terms.detach()
        if self.fisher == "gauss_newton":
            loss = 0.5 * (t ** 2).mean()
            g = (t.unsqueeze(1) * jac).mean(0)
        else:
            loss = t.mean()
            g = jac.mean(0)
        fisher = jac.T @ jac / n
        i = 0
        for p in self.params:
            k = p.numel()
            p.grad = g[i:i + k].view_as(p).clone()
            i += k
        self._apply(g, fisher)
        return loss


def newton(params: Any, lr: float = 1.0, damping: float = 1e-4,
           max_params: int = 4096) -> Newton:
    """Exact damped Newton's method (lecture 002, "Newton or quasi-Newton"); :class:`Newton`."""
    return Newton(params, lr=lr, damping=damping, max_params=max_params)


def natural_gradient(params: Any, lr: float = 0.1, damping: float = 1e-2,
                     fisher: str = "empirical", max_params: int = 4096) -> NaturalGradient:
    """Natural gradient with a damped Fisher (lecture 002, "natural gradient: inverse of
    FIM"; Amari 1998); :class:`NaturalGradient`.

    Defaults lr 0.1 and damping 1e-2: with the empirical Fisher the natural step scales like
    ``1/|r|`` as the per-example errors ``r`` shrink, so the full step (lr 1, little damping)
    overshoots near a minimum (measured: a 4-8-1 tanh regression ends 2× above its start at
    lr 1, damping 1e-3, and 36× below it at lr 0.1, damping 1e-2, after 40 steps).
    """
    return NaturalGradient(params, lr=lr, damping=damping, fisher=fisher,
                           max_params=max_params)


def lbfgs(params: Any, lr: float = 1.0, max_iter: int = 20, history_size: int = 100,
          line_search_fn: str | None = "strong_wolfe", **kwargs: Any) -> torch.optim.LBFGS:
    """L-BFGS (lecture 002, "Newton or quasi-Newton"; Liu & Nocedal 1989): ``torch.optim.LBFGS``
    with the strong-Wolfe line search.

    ``max_iter`` inner iterations per ``step(closure)`` (each evaluates the closure at
    least once). trainlab's default line search is ``"strong_wolfe"`` (torch's is none,
    which makes a fixed ``lr`` step that diverges easily); pass ``line_search_fn=None`` for
    torch's behaviour.
    """

    check_lr(lr)
    if line_search_fn not in (None, "strong_wolfe"):
        raise ValueError("line_search_fn must be None or 'strong_wolfe'. Received: "
                         f"line_search_fn={line_search_fn!r}.")
    opt = torch.optim.LBFGS(_params(params), lr=lr, max_iter=max_iter,
                            history_size=history_size, line_search_fn=line_search_fn, **kwargs)
    opt.closure_kind = "backward"  # type: ignore[attr-defined]
    return opt


def _register() -> None:
    OPTIMIZERS.add("lbfgs", lbfgs, description="quasi-Newton: H^-1 from the last steps, "
                   "strong-Wolfe line search (torch.optim.LBFGS)",
                   reference="Lecture 002, 'Newton or quasi-Newton'; Liu & Nocedal 1989",
                   aliases=("l_bfgs",), defaults={"lr": 1.0},
                   meta={"default_lr": 1.0, "torch_class": torch.optim.LBFGS,
                         "closure": "backward"})
    OPTIMIZERS.add("newton", newton, description="exact damped Newton step "
                   "(H + λI)^-1 g (small models)",
                   reference="Lecture 002, 'Newton or quasi-Newton'", defaults={"lr": 1.0},
                   meta={"default_lr": 1.0, "torch_class": Newton, "closure": "loss"})
    OPTIMIZERS.add("natural_gradient", natural_gradient,
                   description="natural gradient (F + λI)^-1 g with the Fisher (small models)",
                   reference="Lecture 002, 'natural gradient: inverse of FIM'; Amari 1998",
                   aliases=("ngd", "natural"), defaults={"lr": 0.1},
                   meta={"default_lr": 0.1, "torch_class": NaturalGradient,
                         "closure": "per_example"})


_register()
