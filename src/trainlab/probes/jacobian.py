"""JacobianSpectrum: singular values of layer Jacobians and of the input–output Jacobian.

Glorot & Bengio (2010) argue that "training may be more difficult when the singular values of
the Jacobian associated with each layer are far from 1". For a block ``h_{l+1} = f_l(h_l)``
the layer Jacobian is ``J_l = ∂h_{l+1}/∂h_l`` evaluated at each example's ``h_l``; for a
``Linear`` + tanh block it is ``diag(1 − h_{l+1}²) W``. The input–output Jacobian is
``∂y/∂x`` of the whole model.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import Tensor, nn

from trainlab.probes.base import Probe, Schedule, first_tensor, paused, preserved_state

__all__ = ["JacobianSpectrum", "jacobian_singular_values"]


def _as_fn(module: nn.Module, in_shape: tuple[int, ...]):
    """``z (flat, one example) -> module(z as a batch of one) (flat)``."""

    def f(z: Tensor) -> Tensor:
        return first_tensor(module(z.reshape(1, *in_shape))).reshape(-1)

    return f


def jacobian_singular_values(
    module: nn.Module,
    h: Tensor,
    *,
    exact_max: int = 1024,
    k: int = 16,
    iters: int = 4,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, bool]:
    """Singular values of ``∂module(h_i)/∂h_i`` for each example ``h_i`` of the batch ``h``.

    Returns ``(sv, rms, exact)``: ``sv`` is ``(n, r)`` singular values in decreasing order,
    ``rms`` is ``(n,)`` the root-mean-square singular value ``‖J‖_F / sqrt(min(d_in, d_out))``
    and ``exact`` says which method ran. The module is evaluated one example at a time (so a
    BatchNorm must be in eval mode; :class:`JacobianSpectrum` takes care of that).

    Cost, per example, with ``d_in``/``d_out`` the flattened sizes and ``m = min``:
        exact (``m <= exact_max``): ``min(d_in, d_out)`` vector-Jacobian (or Jacobian-vector)
        products via ``torch.func.jacrev``/``jacfwd`` to build ``J``, then
        ``torch.linalg.svdvals`` in ``O(d_in·d_out·m)`` time and ``d_in·d_out`` memory;
        randomized (larger layers): subspace iteration (Halko, Martinsson & Tropp 2011) with
        ``k`` probe vectors and ``iters`` power iterations, ``(2·iters + 1)·k`` Jacobian-vector
        and vector-Jacobian products (``torch.func.jvp``/``vjp``, each about one forward
        pass of the module) plus a QR of a ``d_in × k`` matrix per iteration; it returns the
        top ``k`` singular values (accurate for the largest ones) and the RMS singular value
        from Hutchinson's estimate ``‖JΩ‖_F²/k ≈ ‖J‖_F²`` with Gaussian ``Ω``.
    """
    # forward-mode AD loads decompositions through torch.jit.script on first use, which
    # warns in torch >= 2.10; the warning is torch's own, not the caller's to act on.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*",
                                category=DeprecationWarning)
        return _singular_values(module, h, exact_max, k, iters, generator)


def _singular_values(module: nn.Module, h: Tensor, exact_max: int, k: int, iters: int,
                     generator: torch.Generator | None) -> tuple[Tensor, Tensor, bool]:
    from torch.func import jacfwd, jacrev, jvp, vjp, vmap

    n = h.shape[0]
    in_shape = tuple(h.shape[1:])
    d_in = math.prod(in_shape)
    f = _as_fn(module, in_shape)
    z = h.detach().reshape(n, d_in)
    with torch.no_grad():
        d_out = f(z[0]).numel()
    m = min(d_in, d_out)
    if m <= exact_max:
        jac = jacrev(f) if d_out <= d_in else jacfwd(f)
        J = vmap(jac)(z)  # (n, d_out, d_in)
        sv = torch.linalg.svdvals(J.double()).float()
        rms = sv.pow(2).mean(dim=1).sqrt()
        return sv, rms, True
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    k = min(k, m)
    svs, rmss = [], []
    for i in range(n):
        zi = z[i]
        omega = torch.randn(k, d_in, generator=generator).to(zi)
        _, vjp_fn = vjp(f, zi)

        def jmv(v: Tensor, zi: Tensor = zi) -> Tensor:
            return jvp(f, (zi,), (v,))[1]

        y = vmap(jmv)(omega)  # (k, d_out) = (J Ω)ᵀ
        rmss.append((y.pow(2).sum() / k / m).sqrt())
        for _ in range(iters):
            q = torch.linalg.qr(vmap(vjp_fn)(y)[0].T).Q.T  # orthonormal rows spanning JᵀJΩ
            y = vmap(jmv)(q)
        svs.append(torch.linalg.svdvals(y.double()).float())
    return torch.stack(svs), torch.stack(rmss), False


class JacobianSpectrum(Probe):
    """Singular values of each block's Jacobian and of the model's input–output Jacobian.

    Blocks default to the model's top-level children (the layers of an ``nn.Sequential``;
    ``block1 … blockL, head`` of a trainlab builder model); any module can be chosen with
    ``layers=``. At a logged step the probe keeps the first ``n_examples`` inputs of each
    block (and of the model) from the forward pass and, after backward, computes the
    per-example Jacobians in eval mode (dropout off, BatchNorm with running statistics — a
    per-example Jacobian needs that) with every probe hook paused, leaving the model's modes,
    buffers, RNG and ``.grad`` unchanged.

    Keys per block (and for layer ``"model"``, the input–output Jacobian): ``jac_sv_max``,
    ``jac_sv_rms``, and when computed exactly ``jac_sv_mean``, ``jac_sv_min``; all averaged
    over the examples. :meth:`spectra` returns ``{"step", "layer", "singular_values",
    "exact"}`` dicts (example-averaged sorted singular values).

    Cost: see :func:`jacobian_singular_values`; the default schedule is sparse (steps 0, 1,
    10, 100 and every 500) because a Jacobian costs many forward passes.

    Args:
        layers: blocks (default: top-level children).
        every: schedule (default ``Schedule(500, log=True, base=10)``).
        n_examples: examples per logged step.
        exact_max: largest ``min(d_in, d_out)`` computed exactly.
        k, iters: randomized method's probe vectors and power iterations.
        input_output: also the model's input–output Jacobian.
        probe_data: a fixed probe set ``x`` (or ``(x, y)``) used instead of training batches.
        seed: seed of the private generator of the randomized method.
    """

    default_layers = "block"

    def __init__(
        self,
        layers: Any = None,
        *,
        every: Any = None,
        n_examples: int = 8,
        exact_max: int = 1024,
        k: int = 16,
        iters: int = 4,
        input_output: bool = True,
        probe_data: Any = None,
        capacity: int = 16,
        seed: int = 0,
    ) -> None:
        super().__init__(layers, every=Schedule(500, log=True, base=10) if every is None else every,
                         hist_every=0, capacity=capacity, probe_data=probe_data)
        for name, v in (("n_examples", n_examples), ("exact_max", exact_max), ("k", k)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1. Received: {name}={v!r}.")
        if not isinstance(iters, int) or iters < 0:
            raise ValueError(f"iters must be an integer >= 0. Received: iters={iters!r}.")
        self.n_examples, self.exact_max, self.k, self.iters = n_examples, exact_max, k, iters
        self.input_output = bool(input_output)
        self._gen = torch.Generator().manual_seed(seed)
        self._inputs: dict[int, Tensor] = {}
        self._pending: list[tuple[int, str, Tensor, bool]] = []
        self._spectra: list[dict[str, Any]] = []

    def _n_raw(self) -> int:
        return 4

    def _setup_for(self, model: nn.Module) -> None:
        targets = list(self.modules)
        if self.input_output:
            self.layer_names.append("model")
            targets.append(model)
        self._targets = targets
        self._hooks = [self._capture(i) for i in range(len(targets))]

    def _install(self) -> None:
        for m, hook in zip(self._targets, self._hooks):
            self._handles.append(m.register_forward_pre_hook(hook))

    def _capture(self, i: int):
        def hook(module: Any, args: Any) -> None:
            if not self.recording:
                return
            x = first_tensor(args)
            if x is not None and x.dim() >= 2:
                self._inputs[i] = x[: self.n_examples].detach().clone()

        return hook

    def _on_after_backward(self) -> None:
        if not self.recording or not self._inputs:
            return
        inputs, self._inputs = self._inputs, {}
        step, slot = self._step, self._slot
        with paused():
            for i, h in inputs.items():
                module = self._targets[i]
                with preserved_state(module, "eval"), torch.enable_grad():
                    sv, rms, exact = jacobian_singular_values(
                        module, h, exact_max=self.exact_max, k=self.k, iters=self.iters,
                        generator=self._gen,
                    )
                stats = torch.stack([
                    sv.mean(), sv.min(dim=1).values.mean(), sv.max(dim=1).values.mean(),
                    rms.mean(),
                ]).detach()
                self._buffer.ensure(stats)[slot, i].copy_(stats)
                self._buffer.meta[slot][(i, "exact")] = exact
                self._pending.append((step, self.layer_names[i], sv.detach().mean(0), exact))

    def _on_end(self) -> None:
        self._inputs = {}

    def _flush(self) -> None:
        super()._flush()
        if self._pending:
            pend, self._pending = self._pending, []
            host = torch.cat([t.reshape(-1) for _, _, t, _ in pend]).cpu().tolist()
            pos = 0
            for step, layer, t, exact in pend:
                vals = host[pos:pos + t.numel()]
                pos += t.numel()
                self._spectra.append({"step": step, "layer": layer,
                                      "singular_values": vals, "exact": exact})

    def clear(self) -> None:
        """Forget the records, histograms and spectra kept so far."""
        super().clear()  # flushes first, so pending spectra are dropped too
        self._spectra = []

    def spectra(self) -> list[dict[str, Any]]:
        """``{"step", "layer", "singular_values", "exact"}`` dicts recorded so far."""
        self._flush()
        return list(self._spectra)

    def _finish(self, step: int, meta: dict, row: Any) -> list[tuple[int, str, str, float]]:
        out = []
        for i, name in enumerate(self.layer_names):
            exact = meta.get((i, "exact"))
            if exact is None:
                continue
            out += [(step, name, "jac_sv_max", float(row[i, 2])),
                    (step, name, "jac_sv_rms", float(row[i, 3]))]
            if exact:
                out += [(step, name, "jac_sv_mean", float(row[i, 0])),
                        (step, name, "jac_sv_min", float(row[i, 1]))]
        return out
