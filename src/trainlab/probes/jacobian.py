"""JacobianSpectrum: singular values of layer Jacobians and of the input–output Jacobian.

Glorot & Bengio (2010) argue that "training may be more difficult when the singular values of
the Jacobian associated with each layer are far from 1". For a block ``h_{l+1} = f_l(h_l)``
the layer Jacobian is ``J_l = ∂h_{l+1}/∂h_l`` evaluated at each example's ``h_l``; for a
``Linear`` + tanh block it is ``diag(1 − h_{l+1}²) W``. The input–output Jacobian is
``∂y/∂x`` of the whole model.

Method: reverse mode first. Every product is computed on a batch of rows — one row per
(example, vector) pair, the example's input repeated along the batch dimension — so a block
runs as it would in training (in-place ops such as ``nn.ReLU(inplace=True)``, fused RNN and
attention kernels) without ``vmap``:

- ``Jᵀu`` (vector-Jacobian product): one ``torch.autograd.grad`` through the block;
- ``Jv`` (Jacobian-vector product, needed only for the top singular values of large
  blocks): forward mode (``torch.func.jvp``) where the block's ops support it, else the
  "double backward" identity ``Jv = ∂(Jᵀu · v)/∂u``; a block that supports neither (e.g.
  ``nn.Hardsigmoid``'s backward is not differentiable *and* an RNN kernel without forward
  mode) gets its RMS singular value only, with the reason in :meth:`JacobianSpectrum.notes`.

Attention runs with PyTorch's "math" scaled-dot-product kernel during these passes (the
fused CPU/GPU kernels have neither forward mode nor a double backward).

Batch dimension: the dim of a block's input that indexes examples is 0, or what the block's
own ``batch_first`` flag says (``nn.LSTM``/``GRU``/``RNN``, ``nn.MultiheadAttention``,
``nn.Transformer*``: dim 1 when sequence-first), or what ``batch_dim=`` says. A block that
*contains* a sequence-first module (a classifier around an ``nn.LSTM``, and so the whole
model for the input–output Jacobian) is refused with an error naming the assumed dim and the
``batch_dim`` to set, never sliced along time steps.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

from trainlab.probes.base import Probe, Schedule, first_tensor, paused, preserved_state

__all__ = ["JacobianSpectrum", "jacobian_singular_values", "module_batch_dim"]

#: rows (example × vector pairs) per forward/backward pass of a block.
MAX_ROWS = 256


def module_batch_dim(module: nn.Module) -> int | None:
    """The dim of ``module``'s input that indexes examples, from its own ``batch_first``
    flag (recurrent layers, ``nn.MultiheadAttention``, ``nn.Transformer`` and its encoder and
    decoder layers and stacks): 0 when batch-first, 1 when sequence-first; ``None`` for
    modules without such a flag."""
    if isinstance(module, (nn.RNNBase, nn.MultiheadAttention, nn.Transformer)):
        return 0 if module.batch_first else 1
    if isinstance(module, (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)):
        return module_batch_dim(module.self_attn)
    if isinstance(module, (nn.TransformerEncoder, nn.TransformerDecoder)):
        return module_batch_dim(module.layers[0]) if len(module.layers) else None
    return None


def _sequence_first_inside(module: nn.Module) -> tuple[str, nn.Module] | None:
    for name, m in module.named_modules():
        if name and module_batch_dim(m) == 1:
            return name, m
    return None


@contextlib.contextmanager
def _math_attention() -> Iterator[None]:
    """Scaled-dot-product attention with the "math" kernel: the fused kernels support
    neither forward mode nor a double backward."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # torch < 2.3: no selection; the fused kernels may then fail
        yield
        return
    with sdpa_kernel([SDPBackend.MATH]):
        yield


class _NoJvp(RuntimeError):
    """Neither forward mode nor the double backward works through this block."""


class _Linearized:
    """The Jacobians ``J_i = ∂f(h_i)/∂h_i`` of ``module`` at ``n`` examples, applied to
    batches of vectors: :meth:`vjp` ``(n, r, d_out) -> (n, r, d_in)`` (rows ``uᵀJ_i``) and
    :meth:`jvp` ``(n, r, d_in) -> (n, r, d_out)`` (rows ``(J_i v)ᵀ``). The module runs on
    ``max_rows`` rows at a time in its current mode (eval: rows are independent)."""

    def __init__(self, module: nn.Module, h: Tensor, batch_dim: int, max_rows: int,
                 deadline: float | None) -> None:
        self.module, self.b, self.max_rows, self.deadline = module, batch_dim, max_rows, deadline
        first = h.detach().movedim(batch_dim, 0)
        self.n = first.shape[0]
        self.in_shape = tuple(first.shape[1:])
        self.z = first.reshape(self.n, -1)
        self.d_in = self.z.shape[1]
        self.ob, self.d_out = self._output_layout()
        self.jvp_mode: str | None = None  # "forward" or "double backward" once one worked

    def _raw(self, z: Tensor) -> Tensor:
        out = first_tensor(self.module(z.reshape(-1, *self.in_shape).movedim(0, self.b)))
        if out is None:
            raise ValueError("its output holds no floating-point tensor")
        return out

    def _output_layout(self) -> tuple[int, int]:
        """Which output dim indexes examples: the one that is 1 for one example and 2 for
        two (the same example twice); refused when there is no such single dim."""
        with torch.no_grad():
            one = self._raw(self.z[:1])
            two = self._raw(self.z[:1].repeat(2, 1))
        diff = [d for d in range(one.dim()) if one.dim() == two.dim()
                and one.shape[d] != two.shape[d]]
        if one.dim() != two.dim() or len(diff) != 1 or (one.shape[diff[0]], two.shape[diff[0]]) \
                != (1, 2):
            raise ValueError(
                f"cannot tell which output dim indexes examples: output shape "
                f"{tuple(one.shape)} for one example, {tuple(two.shape)} for two (input batch "
                f"dim {self.b}); a per-example Jacobian needs per-example outputs")
        return diff[0], one.numel()

    def _call(self, z: Tensor) -> Tensor:
        out = self._raw(z)
        return out.movedim(self.ob, 0).reshape(z.shape[0], -1)

    def _check_time(self) -> None:
        if self.deadline is not None and time.perf_counter() > self.deadline:
            raise TimeoutError("the time budget was spent")

    def _rows(self, w: Tensor, fn: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
        n, r = w.shape[:2]
        idx = torch.arange(n, device=self.z.device).repeat_interleave(r)
        flat = w.reshape(n * r, -1).to(self.z.dtype)
        out = []
        for s in range(0, n * r, self.max_rows):
            self._check_time()
            out.append(fn(self.z[idx[s:s + self.max_rows]], flat[s:s + self.max_rows]))
        return torch.cat(out).reshape(n, r, -1)

    def vjp(self, u: Tensor) -> Tensor:
        return self._rows(u, self._vjp_rows)

    def jvp(self, v: Tensor) -> Tensor:
        return self._rows(v, self._jvp_rows)

    def _vjp_rows(self, z: Tensor, u: Tensor) -> Tensor:
        z0 = z.detach().requires_grad_()
        with torch.enable_grad():
            # clone: a block may work in place on its input (nn.ReLU(inplace=True)), which
            # autograd refuses on a leaf or a view of one.
            out = self._call(z0.clone())
            if not out.requires_grad:
                return torch.zeros_like(z0)
            (g,) = torch.autograd.grad(out, z0, u, allow_unused=True)
        return torch.zeros_like(z0) if g is None else g

    def _jvp_rows(self, z: Tensor, v: Tensor) -> Tensor:
        if self.jvp_mode in (None, "forward"):
            try:
                out = torch.func.jvp(lambda t: self._call(t.clone()), (z.detach(),), (v,))[1]
                self.jvp_mode = "forward"
                return out
            except (RuntimeError, NotImplementedError) as e:
                if self.jvp_mode == "forward":
                    raise
                self._forward_error = " ".join(str(e).split())[:160]
        try:
            out = self._double_backward(z, v)
        except (RuntimeError, NotImplementedError) as e:
            raise _NoJvp(
                f"no Jacobian-vector product: forward mode failed ({self._forward_error}) and "
                f"so did the double backward ({' '.join(str(e).split())[:160]})") from e
        self.jvp_mode = "double backward"
        return out

    def _double_backward(self, z: Tensor, v: Tensor) -> Tensor:
        z0 = z.detach().requires_grad_()
        with torch.enable_grad():
            out = self._call(z0.clone())
            if not out.requires_grad:
                return torch.zeros(z.shape[0], self.d_out, dtype=z.dtype, device=z.device)
            u0 = torch.zeros_like(out, requires_grad=True)
            (g,) = torch.autograd.grad(out, z0, u0, create_graph=True, allow_unused=True)
            if g is None or not g.requires_grad:  # Jᵀu does not depend on u: J = 0
                return torch.zeros_like(out)
            (jv,) = torch.autograd.grad(g, u0, v, allow_unused=True)
        return torch.zeros_like(out) if jv is None else jv


def jacobian_singular_values(
    module: nn.Module,
    h: Tensor,
    *,
    exact_max: int = 1024,
    k: int = 16,
    iters: int = 4,
    generator: torch.Generator | None = None,
    batch_dim: int = 0,
    max_rows: int = MAX_ROWS,
    deadline: float | None = None,
) -> tuple[Tensor, Tensor, bool]:
    """Singular values of ``∂module(h_i)/∂h_i`` for each example ``h_i`` of the batch ``h``
    (examples along ``batch_dim``).

    Returns ``(sv, rms, exact)``: ``sv`` is ``(n, r)`` singular values in decreasing order,
    ``rms`` is ``(n,)`` the root-mean-square singular value ``‖J‖_F / sqrt(min(d_in, d_out))``
    and ``exact`` says which method ran. ``sv`` has no columns (``r = 0``) when the top
    singular values of a large block need Jacobian-vector products the block does not
    support (see the module docstring); ``rms`` needs only vector-Jacobian products. The
    module runs in its current mode (a BatchNorm must be in eval mode, so that examples are
    independent; :class:`JacobianSpectrum` takes care of that).

    Cost, with ``d_in``/``d_out`` the flattened sizes of one example, ``m = min``, and one
    "row" one example's forward and backward pass (rows are batched ``max_rows`` at a time):
        exact (``m <= exact_max``): ``m`` rows per example (``d_out`` vector-Jacobian products,
        or ``d_in`` Jacobian-vector products when ``d_in < d_out``) to build ``J``, then
        ``torch.linalg.svdvals`` in ``O(d_in·d_out·m)`` time and ``d_in·d_out`` memory;
        randomized (larger blocks): subspace iteration (Halko, Martinsson & Tropp 2011,
        alg. 4.3 on ``Jᵀ``) with ``k`` Gaussian vectors and ``iters`` power iterations,
        ``2·(iters + 1)·k`` rows per example; it returns the top ``k`` singular values
        (accurate for the largest ones) and the RMS singular value from Hutchinson's
        estimate ``‖ΩᵀJ‖_F²/k ≈ ‖J‖_F²`` with Gaussian ``Ω``.

    ``deadline`` (a ``time.perf_counter()`` value): raise ``TimeoutError`` when it passes
    between two batches of rows.
    """
    sv, rms, exact, _ = _spectrum(module, h, exact_max, k, iters, generator, batch_dim,
                                  max_rows, deadline)
    return sv, rms, exact


def _spectrum(module: nn.Module, h: Tensor, exact_max: int, k: int, iters: int,
              generator: torch.Generator | None, batch_dim: int, max_rows: int,
              deadline: float | None) -> tuple[Tensor, Tensor, bool, str]:
    """:func:`jacobian_singular_values` plus why ``sv`` is empty (``""`` when it is not)."""
    # forward-mode AD loads decompositions through torch.jit.script on first use, which
    # warns in torch >= 2.10; the warning is torch's own, not the caller's to act on.
    with warnings.catch_warnings(), _math_attention():
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*",
                                category=DeprecationWarning)
        lin = _Linearized(module, h, batch_dim, max_rows, deadline)
        m = min(lin.d_in, lin.d_out)
        if m <= exact_max:
            J = _exact_jacobian(lin, exact_max)
            if J is not None:
                sv = torch.linalg.svdvals(J.double()).float()
                return sv, sv.pow(2).mean(dim=1).sqrt(), True, ""
        return _randomized(lin, min(k, m), iters, generator)


def _exact_jacobian(lin: _Linearized, exact_max: int) -> Tensor | None:
    """``(n, d_out, d_in)`` from the cheaper side (``None``: only JVPs would do and the
    block has none)."""
    n, d_in, d_out = lin.n, lin.d_in, lin.d_out
    if d_in < d_out:
        eye = torch.eye(d_in, dtype=lin.z.dtype, device=lin.z.device).expand(n, d_in, d_in)
        try:
            return lin.jvp(eye).transpose(1, 2)
        except _NoJvp:
            if d_out > exact_max:
                return None
    eye = torch.eye(d_out, dtype=lin.z.dtype, device=lin.z.device).expand(n, d_out, d_out)
    return lin.vjp(eye)


def _randomized(lin: _Linearized, k: int, iters: int, generator: torch.Generator | None
                ) -> tuple[Tensor, Tensor, bool, str]:
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    n, m = lin.n, min(lin.d_in, lin.d_out)
    omega = torch.randn(n, k, lin.d_out, generator=generator).to(lin.z)
    w = lin.vjp(omega)  # (n, k, d_in): rows ωᵀJ
    rms = (w.double().pow(2).sum(dim=(1, 2)) / k / m).sqrt().float()
    try:
        for it in range(iters + 1):
            q = torch.linalg.qr(w.transpose(1, 2)).Q.transpose(1, 2)  # rows span JᵀJ…Ω
            y = lin.jvp(q)  # (n, k, d_out): rows (Jq)ᵀ
            if it == iters:
                break
            p = torch.linalg.qr(y.transpose(1, 2)).Q.transpose(1, 2)
            w = lin.vjp(p)
    except _NoJvp as e:
        return torch.zeros(n, 0), rms, False, str(e)
    return torch.linalg.svdvals(y.double()).float(), rms, False, ""


class JacobianSpectrum(Probe):
    """Singular values of each block's Jacobian and of the model's input–output Jacobian.

    Blocks default to the model's top-level children (the layers of an ``nn.Sequential``;
    ``block1 … blockL, head`` of a trainlab builder model); any module can be chosen with
    ``layers=``. At a logged step the probe keeps the first ``n_examples`` inputs of each
    block (and of the model) from the forward pass (a block called several times: its first
    call) and, after backward, computes the per-example Jacobians in eval mode (dropout off,
    BatchNorm with running statistics — a per-example Jacobian needs that) with every probe
    hook paused, leaving the model's modes, buffers, RNG and ``.grad`` unchanged.

    Keys per block (and for layer ``"model"``, the input–output Jacobian): ``jac_sv_rms``,
    ``jac_sv_max`` (unless the block has no Jacobian-vector product, see the module
    docstring), and when computed exactly ``jac_sv_mean``, ``jac_sv_min``; all averaged over
    the examples. :meth:`spectra` returns ``{"step", "layer", "singular_values", "exact"}``
    dicts (example-averaged sorted singular values); :meth:`notes` says what was not
    computed and why (a block whose input is integer ids, a spent time budget, a failure
    with ``errors="note"``).

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
        batch_dim: the dim of the model's input that indexes examples (an int), or a dict
            ``{layer name: dim}`` (``"model"`` for the model's input); blocks not named use
            their own ``batch_first`` flag or 0 (see the module docstring).
        time_budget: seconds per logged step; blocks not done when it is spent are skipped
            (named in :meth:`notes`). ``None``: no limit.
        errors: ``"raise"`` (default) or ``"note"``: a block whose Jacobian fails (or whose
            batch dim is ambiguous) is skipped and named in :meth:`notes` with the reason.
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
        batch_dim: int | dict[str, int] | None = None,
        time_budget: float | None = None,
        errors: str = "raise",
    ) -> None:
        super().__init__(layers, every=Schedule(500, log=True, base=10) if every is None else every,
                         hist_every=0, capacity=capacity, probe_data=probe_data)
        for name, v in (("n_examples", n_examples), ("exact_max", exact_max), ("k", k)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1. Received: {name}={v!r}.")
        if not isinstance(iters, int) or iters < 0:
            raise ValueError(f"iters must be an integer >= 0. Received: iters={iters!r}.")
        if not (batch_dim is None or isinstance(batch_dim, int) or (
                isinstance(batch_dim, dict) and all(isinstance(d, int)
                                                    for d in batch_dim.values()))):
            raise TypeError("batch_dim must be None, an int (the model input's batch dim) or "
                            f"a dict {{layer name: int}}. Received: batch_dim={batch_dim!r}.")
        if time_budget is not None and not (isinstance(time_budget, (int, float))
                                            and time_budget >= 0):
            raise ValueError(f"time_budget must be None or seconds >= 0. Received: "
                             f"time_budget={time_budget!r}.")
        if errors not in ("raise", "note"):
            raise ValueError(f"errors must be 'raise' or 'note'. Received: errors={errors!r}.")
        self.n_examples, self.exact_max, self.k, self.iters = n_examples, exact_max, k, iters
        self.input_output = bool(input_output)
        self.batch_dim, self.time_budget, self.errors = batch_dim, time_budget, errors
        self._gen = torch.Generator().manual_seed(seed)
        self._inputs: dict[int, Tensor] = {}
        self._no_input: dict[int, str] = {}
        self._pending: list[tuple[int, str, Tensor, bool]] = []
        self._spectra: list[dict[str, Any]] = []
        self._notes: list[str] = []

    def _n_raw(self) -> int:
        return 4

    def _setup_for(self, model: nn.Module) -> None:
        names, targets = list(self.layer_names), list(self.modules)
        if self.input_output:
            names.append("model")
            targets.append(model)
        self.layer_names, self._targets, self._dims = [], [], []
        for name, module in zip(names, targets):
            try:
                dim = self._batch_dim_of(name, module)
            except ValueError as e:
                if self.errors == "raise":
                    raise
                self._notes.append(str(e))
                continue
            self.layer_names.append(name)
            self._targets.append(module)
            self._dims.append(dim)
        self._hooks = [self._capture(i) for i in range(len(self._targets))]

    def _batch_dim_of(self, name: str, module: nn.Module) -> int:
        """The rule of the module docstring: ``batch_dim`` for this name, the module's own
        flag, 0 — and an error for a block holding a sequence-first module."""
        given = self.batch_dim.get(name) if isinstance(self.batch_dim, dict) else (
            self.batch_dim if name == "model" else None)
        if given is not None:
            return given
        own = module_batch_dim(module)
        if own is not None:
            return own
        inner = _sequence_first_inside(module)
        if inner is not None:
            sub, m = inner
            raise ValueError(
                f"JacobianSpectrum: cannot tell which dim of the input of {name!r} "
                f"({type(module).__name__}) indexes examples: it contains the sequence-first "
                f"{type(m).__name__} {sub!r} (batch_first=False), so dim 0, which would be "
                f"assumed, may be time steps. Pass batch_dim={{{name!r}: 1}} (the dim that "
                "indexes examples) or leave the block out with layers=.")
        return 0

    def _install(self) -> None:
        for m, hook in zip(self._targets, self._hooks):
            self._handles.append(m.register_forward_pre_hook(hook))

    def _capture(self, i: int):
        def hook(module: Any, args: Any) -> None:
            if not self.recording or i in self._inputs:  # first call only
                return
            x = first_tensor(args)
            b = self._dims[i]
            if x is None:
                self._no_input[i] = ("its input is not a floating-point tensor (integer ids "
                                     "have no Jacobian)")
            elif x.dim() <= (b if b >= 0 else -b - 1):
                self._no_input[i] = f"its input of shape {tuple(x.shape)} has no dim {b}"
            else:
                n = min(self.n_examples, x.shape[b])
                self._inputs[i] = x.narrow(b, 0, n).detach().clone()

        return hook

    def notes(self) -> list[str]:
        """What was not computed, and why (one line each)."""
        return list(self._notes)

    def _note(self, step: int, i: int, why: str) -> None:
        self._notes.append(f"Jacobian of {self.layer_names[i]!r} not computed at step {step}: "
                           f"{why}")

    def _on_after_backward(self) -> None:
        if not self.recording:
            return
        inputs, self._inputs = self._inputs, {}
        no_input, self._no_input = self._no_input, {}
        step, slot = self._step, self._slot
        for i, why in no_input.items():
            self._note(step, i, why)
        deadline = (None if self.time_budget is None
                    else time.perf_counter() + self.time_budget)
        with paused():
            for i in sorted(inputs):
                self._one(step, slot, i, inputs[i], deadline)

    def _one(self, step: int, slot: int, i: int, h: Tensor, deadline: float | None) -> None:
        module = self._targets[i]
        try:
            with preserved_state(module, "eval"), torch.enable_grad():
                sv, rms, exact, why = _spectrum(
                    module, h, self.exact_max, self.k, self.iters, self._gen, self._dims[i],
                    MAX_ROWS, deadline)
        except TimeoutError:
            self._note(step, i, f"the time budget ({self.time_budget:g} s) was spent")
            return
        except Exception as e:  # noqa: BLE001 - reported, or re-raised with errors="raise"
            if self.errors == "raise":
                raise
            self._note(step, i, f"{type(e).__name__}: {' '.join(str(e).split())[:200]}")
            return
        if why:
            self._note(step, i, f"only the RMS singular value ({why})")
        top = sv.numel() > 0
        if top:
            stats = torch.stack([sv.mean(), sv.min(dim=1).values.mean(),
                                 sv.max(dim=1).values.mean(), rms.mean()])
        else:  # NaN: not computed (only the RMS is)
            stats = torch.stack([rms.mean() * math.nan] * 3 + [rms.mean()])
        stats = stats.detach()
        self._buffer.ensure(stats)[slot, i].copy_(stats)
        self._buffer.meta[slot][(i, "exact")] = exact
        self._buffer.meta[slot][(i, "top")] = top
        if top:
            self._pending.append((step, self.layer_names[i], sv.detach().mean(0), exact))

    def _on_end(self) -> None:
        self._inputs, self._no_input = {}, {}

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
        """Forget the records, histograms, spectra and notes kept so far."""
        super().clear()  # flushes first, so pending spectra are dropped too
        self._spectra = []
        self._notes = []

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
            out.append((step, name, "jac_sv_rms", float(row[i, 3])))
            if meta.get((i, "top"), True):
                out.append((step, name, "jac_sv_max", float(row[i, 2])))
            if exact:
                out += [(step, name, "jac_sv_mean", float(row[i, 0])),
                        (step, name, "jac_sv_min", float(row[i, 1]))]
        return out
