"""What acts on gradients between backward and the step: clipping (by norm or value) and
annealed Gaussian gradient noise (Neelakantan et al. 2015).

Registry: :data:`GRAD_NOISES` (family ``"grad_noise"``):
``GRAD_NOISES.build("annealed_gaussian", eta=0.01, generator=g)`` returns a
:class:`GradientNoise`, which the Trainer takes as ``grad_noise=`` (a run config's
``optim.grad_noise`` with ``optim.grad_noise_options``)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from trainlab.optim.optimizers import _is_number
from trainlab.optim.schedules import _check_int
from trainlab.registry import Registry

__all__ = [
    "GRAD_NOISES",
    "GradientNoise",
    "clip_gradients",
]

# ------------------------------------------------------------------------------------------
# gradient clipping and gradient noise
# ------------------------------------------------------------------------------------------
def _with_grad(params: Any) -> list[torch.Tensor]:
    if isinstance(params, torch.Tensor):
        params = [params]
    elif isinstance(params, torch.nn.Module):
        params = params.parameters()
    return [p for p in params if p.grad is not None]


def clip_gradients(
    params: Any,
    max_norm: float | None = None,
    max_value: float | None = None,
    norm_type: float = 2.0,
) -> float:
    """Clip gradients in place; return their total norm *before* clipping.

    ``max_value`` clamps each gradient element to ``[-max_value, max_value]``
    (``torch.nn.utils.clip_grad_value_``); ``max_norm`` then rescales all gradients together
    by ``min(1, max_norm / ‖g‖)`` (``torch.nn.utils.clip_grad_norm_``, Pascanu et al. 2013),
    so the direction is kept. With neither, only the norm is measured (a logging aid).
    ``norm_type`` is the p of the p-norm over all gradients (``inf`` for the max). Parameters
    without a gradient are skipped. The returned float syncs with the device.
    """
    for name, v in (("max_norm", max_norm), ("max_value", max_value)):
        if v is not None and (not _is_number(v) or not float(v) > 0):
            raise ValueError(f"{name} must be a number > 0 or None. Received: {name}={v!r}.")
    ps = _with_grad(params)
    if not ps:
        return 0.0
    if max_norm is not None and max_value is None:
        total = torch.nn.utils.clip_grad_norm_(ps, float(max_norm), norm_type=norm_type)
        return float(total)
    # measure first: clip_grad_norm_ with an infinite bound only measures (its factor is 1)
    total = torch.nn.utils.clip_grad_norm_(ps, float("inf"), norm_type=norm_type)
    if max_value is not None:
        torch.nn.utils.clip_grad_value_(ps, float(max_value))
    if max_norm is not None:
        torch.nn.utils.clip_grad_norm_(ps, float(max_norm), norm_type=norm_type)
    return float(total)


class GradientNoise:
    r"""Annealed Gaussian gradient noise (Neelakantan et al. 2015; lecture 003, "Gradient noise").

    At training step ``t`` every gradient gets independent noise::

        g_t <- g_t + N(0, σ_t²),      σ_t² = η / (1 + t)^γ

    Neelakantan et al. use η ∈ {0.01, 0.3, 1.0} and γ = 0.55; the noise anneals so that it
    helps early (escaping poor regions, especially for deep or badly initialized networks)
    and fades later. Call :meth:`add_` after ``loss.backward()`` (and after clipping, if any)
    and before ``optimizer.step()``.

    Args:
        eta: η >= 0, the variance at ``t = 0``.
        gamma: γ >= 0, the annealing exponent.
        generator: a ``torch.Generator``; with it the noise is reproducible. The noise is
            drawn on the generator's device and moved to the gradient's device when they
            differ. ``None`` uses torch's global generator.
    """

    def __init__(
        self, eta: float = 0.3, gamma: float = 0.55, generator: torch.Generator | None = None
    ) -> None:
        for name, v in (("eta", eta), ("gamma", gamma)):
            if not _is_number(v) or not float(v) >= 0 or not math.isfinite(float(v)):
                raise ValueError(f"{name} must be a finite number >= 0. Received: {name}={v!r}.")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(
                "generator must be a torch.Generator or None. "
                f"Received: {type(generator).__name__}."
            )
        self.eta = float(eta)
        self.gamma = float(gamma)
        self.generator = generator

    def variance(self, step: int) -> float:
        """σ_t² = η / (1 + t)^γ."""
        step = _check_int("step", step, 0)
        return self.eta / (1.0 + step) ** self.gamma

    def sigma(self, step: int) -> float:
        """σ_t, the noise's standard deviation at step ``t``."""
        return math.sqrt(self.variance(step))

    @torch.no_grad()
    def add_(self, params: Iterable[torch.Tensor] | torch.nn.Module, step: int) -> float:
        """Add N(0, σ_t²) to the gradient of every parameter that has one; return σ_t."""
        sigma = self.sigma(step)
        if sigma == 0.0:
            return sigma
        g = self.generator
        for p in _with_grad(params):
            grad = p.grad
            device = grad.device if g is None else g.device
            noise = torch.randn(grad.shape, generator=g, device=device, dtype=grad.dtype)
            grad.add_(noise.to(grad.device), alpha=sigma)
        return sigma

    def state_dict(self) -> dict[str, Any]:
        """η, γ and the generator's state, for checkpoints."""
        return {
            "eta": self.eta,
            "gamma": self.gamma,
            "generator_state": None if self.generator is None else self.generator.get_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict` (the generator, if any, is restored in place)."""
        self.eta = float(state["eta"])
        self.gamma = float(state["gamma"])
        gs = state.get("generator_state")
        if gs is not None:
            if self.generator is None:
                self.generator = torch.Generator()
            self.generator.set_state(gs)

    def __repr__(self) -> str:
        return f"GradientNoise(eta={self.eta}, gamma={self.gamma})"


#: Family ``"grad_noise"``: name -> factory of an object with ``add_(params, step)`` (the
#: Trainer's ``grad_noise=``), called after backward and before the optimizer's step.
GRAD_NOISES = Registry("grad_noise")
GRAD_NOISES.add(
    "annealed_gaussian", GradientNoise,
    description="g += N(0, σ_t²), σ_t² = eta/(1+t)^gamma (eta 0.3, gamma 0.55), after backward",
    reference="Neelakantan et al. 2015, Adding Gradient Noise Improves Learning for Very "
              "Deep Networks; lecture 003",
    aliases=("gaussian", "annealed", "neelakantan"),
)
