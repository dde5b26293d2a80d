"""Weight normalization (``wn``) and centered weight normalization (``cwn``).

**Weight normalization** (Salimans & Kingma 2016, "Weight Normalization: A Simple
Reparameterization to Accelerate Training of Deep Neural Networks") writes the weight vector
of every output unit ``i`` as a length times a direction::

    w_i = g_i * v_i / ||v_i||                                     (WN)

**Centered weight normalization** (Huang, Liu, Liu, Lang & Tao 2017, "Centered Weight
Normalization in Accelerating Training of Deep Neural Networks", lecture 002) also removes the
mean of each direction, so every unit's weights sum to zero::

    w_i = g_i * (v_i - mean(v_i)) / ||v_i - mean(v_i)||           (CWN)

``v_i`` is the *row* of unit ``i``: its ``fan_in = C_in / groups * prod(kernel)`` weights. For
``nn.Linear`` and ``nn.ConvNd`` that is ``weight[i]``; for ``nn.ConvTransposeNd`` (weight
``(C_in, C_out / groups, *k)``) output channel ``i = group * C_out/groups + j`` owns
``weight[group * C_in/groups : (group+1) * C_in/groups, j]`` — torch's own ``weight_norm``
normalizes over the *input* channel there (its ``dim=0``), which is not per output unit.

**Stable parameter names.** :func:`weight_norm_` turns a layer into its weight-normalized
form *in place* and keeps its place in the model: the parameters are ``weight_g`` (shape
``(C_out,)``, the lengths ``g``), ``weight_v`` (the shape of ``weight``, the directions ``v``)
and ``bias``; ``layer.weight`` stays readable (it is computed) and settable (setting it
sets ``v = w`` and ``g = ||w_i||``, so the function is unchanged — for CWN the centred
``w``). So ``block1.linear.weight_g`` is the name in every checkpoint; there is no
``parametrizations.weight.original0``. Loading accepts, besides that layout, torch's
``torch.nn.utils.parametrizations.weight_norm`` layout (``parametrizations.weight.original0``
= g with its kept dims, ``original1`` = v), the deprecated hook-based layout
(``weight_g`` of shape ``(C_out, 1, ...)``) and a plain layer's ``weight``; each is converted
so that the loaded layer computes the same weight. :func:`to_torch_weight_norm_state_dict`
writes the other way (torch's ``dim=0`` convention) for models that use torch's own layer.

The gradient with respect to ``g`` and ``v`` is left to autograd. The paper's expressions
(WN: ``dL/dv = g/||v|| (I - w w^T/||w||^2) dL/dw``; CWN, Huang et al. eq. 6 with
``u = (v - mean v)/||v - mean v||``: ``dL/dv = g/||v - mean v|| (dL/du' - (u . dL/du') u -
mean(dL/du') 1)``) are checked against autograd in float64 in the tests.

**Data-dependent initialization** (:func:`weight_norm_init_`, Salimans & Kingma §3): one
forward pass of a batch, layer by layer in forward order; each WN layer's pre-activation
``t = v . x / ||v||`` gets ``g = s / sigma[t]`` and ``b = -mu[t] s / sigma[t]`` (``s`` =
``init_scale``, 1 in the paper) so its output has zero mean and variance ``s^2`` per unit
on that batch, and the next layer sees the initialized output.

**Mean-only batch normalization and WN + mean-only BN** (Salimans & Kingma §2.2): the paper
recommends WN with a batch norm that only subtracts the minibatch mean (no division by the
standard deviation: WN's ``g`` scales), ``y = t - mu_B[t] + b`` —
:class:`trainlab.nn.renorm.MeanOnlyBatchNorm` (``"mobn"``); the norm ``"wn_mobn"`` puts WN on
every layer and mean-only BN in its ``norm`` slot.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from trainlab.nn.norms import NORMS

__all__ = [
    "WeightNormConv1d",
    "WeightNormConv2d",
    "WeightNormConv3d",
    "WeightNormConvTranspose1d",
    "WeightNormConvTranspose2d",
    "WeightNormConvTranspose3d",
    "WeightNormLinear",
    "cwn_weight",
    "is_weight_normalized",
    "remove_weight_norm_",
    "to_torch_weight_norm_state_dict",
    "wn_weight",
    "weight_norm_",
    "weight_norm_init_",
    "weight_rows",
]

_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
#: The reparametrizations a weight-normalized layer can carry.
MODES = ("wn", "cwn", "normprop")


# -- rows: the weights of one output unit ----------------------------------------------------------
def weight_rows(weight: Tensor, transposed: bool = False, groups: int = 1) -> Tensor:
    """The ``(C_out, fan_in)`` matrix whose row ``i`` holds output unit ``i``'s weights.

    ``weight`` has the layout of ``nn.Linear`` / ``nn.ConvNd`` (``(C_out, C_in/groups, *k)``)
    or, with ``transposed=True``, of ``nn.ConvTransposeNd`` (``(C_in, C_out/groups, *k)``).
    """
    if not transposed:
        return weight.reshape(weight.shape[0], -1)
    c_in, c_out_g = weight.shape[0], weight.shape[1]
    k = math.prod(weight.shape[2:])
    w = weight.reshape(groups, c_in // groups, c_out_g, k).transpose(1, 2)
    return w.reshape(groups * c_out_g, (c_in // groups) * k)


def _from_rows(rows: Tensor, shape: torch.Size, transposed: bool, groups: int) -> Tensor:
    """Inverse of :func:`weight_rows`."""
    if not transposed:
        return rows.reshape(shape)
    c_in, c_out_g = shape[0], shape[1]
    k = math.prod(shape[2:])
    w = rows.reshape(groups, c_out_g, c_in // groups, k).transpose(1, 2)
    return w.reshape(shape)


def _directions(rows: Tensor, centered: bool) -> Tensor:
    if centered:
        rows = rows - rows.mean(dim=1, keepdim=True)
    return rows / rows.norm(dim=1, keepdim=True)


def wn_weight(
    v: Tensor, g: Tensor, transposed: bool = False, groups: int = 1, centered: bool = False
) -> Tensor:
    """``w_i = g_i v_i / ||v_i||`` per output unit (Salimans & Kingma 2016).

    ``v`` has the layer's weight layout (see :func:`weight_rows`), ``g`` shape ``(C_out,)``.
    ``centered=True`` is :func:`cwn_weight`. No epsilon (as the paper and torch's
    ``weight_norm``): a zero row gives NaN.
    """
    rows = weight_rows(v, transposed, groups)
    w = g.reshape(-1, 1) * _directions(rows, centered)
    return _from_rows(w, v.shape, transposed, groups)


def cwn_weight(v: Tensor, g: Tensor, transposed: bool = False, groups: int = 1) -> Tensor:
    """``w_i = g_i (v_i - mean(v_i)) / ||v_i - mean(v_i)||`` per output unit (Huang et al.
    2017): each unit's weights have zero mean and length ``g_i``."""
    return wn_weight(v, g, transposed, groups, centered=True)


# -- the layers ------------------------------------------------------------------------------------
class _WeightNormMixin:
    """Shared by the weight-normalized layer classes: ``weight`` computed from
    ``weight_g`` and ``weight_v``. Not built directly: see :func:`weight_norm_`."""

    #: "wn", "cwn" or "normprop" (row normalization with the NormProp defaults).
    wn_mode: str = "wn"
    #: init_model and fold read this: ``weight`` is derived but can be set.
    settable_weight = True
    #: the parameters ``weight`` is derived from (init_model leaves them to the setter).
    weight_sources = ("weight_g", "weight_v")

    @property
    def _transposed(self) -> bool:
        return isinstance(self, _TRANSPOSED)

    @property
    def _groups(self) -> int:
        return int(getattr(self, "groups", 1))

    @property
    def weight(self) -> Tensor:  # type: ignore[override]
        return wn_weight(
            self.weight_v, self.weight_g, self._transposed, self._groups,
            centered=self.wn_mode == "cwn",
        )  # fmt: skip

    @weight.setter
    def weight(self, value: Tensor) -> None:
        self.set_weight_(value)

    @torch.no_grad()
    def set_weight_(self, w: Tensor) -> None:
        """Set ``v = w`` and ``g = ||w_i||`` (CWN: ``||w_i - mean(w_i)||``) in place, so the
        layer computes ``w`` (CWN: ``w`` with each row centred)."""
        w = w.detach().to(device=self.weight_v.device, dtype=self.weight_v.dtype)
        if w.shape != self.weight_v.shape:
            raise ValueError(
                f"weight must have shape {tuple(self.weight_v.shape)}. "
                f"Received: weight of shape {tuple(w.shape)}."
            )
        rows = weight_rows(w, self._transposed, self._groups)
        if self.wn_mode == "cwn":
            rows = rows - rows.mean(dim=1, keepdim=True)
        self.weight_v.copy_(w)
        self.weight_g.copy_(rows.norm(dim=1))

    @torch.no_grad()
    def init_weight_(self, w: Tensor) -> None:
        """What an initializer (``trainlab.init.init_model``) writes: WN and CWN take ``w``
        as :meth:`set_weight_` does (the layer starts as the plain layer with that init);
        NormProp takes only its direction, ``v = w``, and keeps ``gamma``."""
        if self.wn_mode == "normprop":
            self.weight_v.copy_(w.to(self.weight_v))
        else:
            self.set_weight_(w)

    def __init__(self, *args: Any, mode: str = "wn", **kwargs: Any) -> None:
        # Direct construction, e.g. WeightNormLinear(784, 100, mode="cwn"): the torch base
        # class assigns `weight` (caught below) and calls reset_parameters.
        object.__setattr__(self, "wn_mode", _check_mode(mode))
        super().__init__(*args, **kwargs)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "weight":  # a Parameter too: nn.Module would register it beside v and g
            if "weight_v" not in self._parameters:  # the torch base class's __init__
                kw = {"dtype": value.dtype, "device": value.device}
                n_out = weight_rows(value, self._transposed, self._groups).shape[0]
                self.register_parameter("weight_g", nn.Parameter(torch.ones(n_out, **kw)))
                self.register_parameter("weight_v", nn.Parameter(value.detach().clone()))
            self.set_weight_(value)
            return
        super().__setattr__(name, value)  # type: ignore[misc]

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Torch's default init of the plain layer (Kaiming uniform with ``a = sqrt(5)``,
        bias uniform in ``±1/sqrt(fan_in)``) for ``v``, then ``g = ||v_i||`` (WN, CWN with the
        centred rows) or ``g = 1, b = 0`` (NormProp)."""
        if "weight_v" not in self._parameters:  # called from the base __init__ before `weight`
            return
        w = torch.empty_like(self.weight_v)
        nn.init.kaiming_uniform_(w, a=math.sqrt(5))
        self.set_weight_(w)
        fan_in, _ = nn.init._calculate_fan_in_and_fan_out(w)  # as torch's layers do
        if self.bias is not None:
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            nn.init.uniform_(self.bias, -bound, bound)
        if self.wn_mode == "normprop":
            self.weight_g.fill_(1.0)
            if self.bias is not None:
                self.bias.zero_()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):  # fmt: skip
        _convert_weight_keys(self, state_dict, prefix)
        super()._load_from_state_dict(  # type: ignore[misc]
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mode={self.wn_mode}"  # type: ignore[misc]


class WeightNormLinear(_WeightNormMixin, nn.Linear):
    """``nn.Linear`` with ``weight = g v / ||v||`` per output unit (see the module docstring)."""


class WeightNormConv1d(_WeightNormMixin, nn.Conv1d):
    """``nn.Conv1d`` with a weight-normalized kernel per output channel."""


class WeightNormConv2d(_WeightNormMixin, nn.Conv2d):
    """``nn.Conv2d`` with a weight-normalized kernel per output channel."""


class WeightNormConv3d(_WeightNormMixin, nn.Conv3d):
    """``nn.Conv3d`` with a weight-normalized kernel per output channel."""


class WeightNormConvTranspose1d(_WeightNormMixin, nn.ConvTranspose1d):
    """``nn.ConvTranspose1d`` with a weight-normalized kernel per *output* channel."""


class WeightNormConvTranspose2d(_WeightNormMixin, nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` with a weight-normalized kernel per *output* channel."""


class WeightNormConvTranspose3d(_WeightNormMixin, nn.ConvTranspose3d):
    """``nn.ConvTranspose3d`` with a weight-normalized kernel per *output* channel."""


_CLASSES: dict[type[nn.Module], type[nn.Module]] = {
    nn.Linear: WeightNormLinear,
    nn.Conv1d: WeightNormConv1d,
    nn.Conv2d: WeightNormConv2d,
    nn.Conv3d: WeightNormConv3d,
    nn.ConvTranspose1d: WeightNormConvTranspose1d,
    nn.ConvTranspose2d: WeightNormConvTranspose2d,
    nn.ConvTranspose3d: WeightNormConvTranspose3d,
}
_PLAIN = {v: k for k, v in _CLASSES.items()}


def is_weight_normalized(module: nn.Module) -> bool:
    """Whether ``module`` is one of trainlab's weight-normalized layers (WN, CWN, NormProp)."""
    return isinstance(module, _WeightNormMixin)


def _check_mode(mode: Any) -> str:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}. Received: mode={mode!r}.")
    return mode


def weight_norm_(layer: nn.Module, centered: bool = False, *, mode: str | None = None) -> nn.Module:
    """Weight-normalize ``layer`` in place (same object, same place in its model); return it.

    ``layer`` is an ``nn.Linear``, ``nn.Conv1d/2d/3d`` or ``nn.ConvTranspose1d/2d/3d`` (any
    ``groups``). Its ``weight`` Parameter is replaced by ``weight_g`` (``(C_out,)``) and
    ``weight_v`` (the weight's shape), set so that the layer computes the same function:
    ``v = w``, ``g = ||w_i||`` (``centered=True``: CWN, ``g = ||w_i - mean(w_i)||``, and the
    function is that of the centred weights). ``mode`` (``"wn"``, ``"cwn"``, ``"normprop"``)
    overrides ``centered``; NormProp sets ``g = 1`` and ``b = 0`` (Arpit et al. 2016).
    """
    mode = _check_mode(mode if mode is not None else ("cwn" if centered else "wn"))
    if is_weight_normalized(layer):
        raise ValueError(
            f"layer is already weight-normalized (mode={layer.wn_mode!r}). "
            f"Received: {layer!r}."
        )
    if nn.utils.parametrize.is_parametrized(layer, "weight"):
        raise ValueError(
            "weight_norm_ needs a layer whose weight is a plain Parameter; this one is "
            "parametrized (torch's weight_norm?). Load its state_dict into a trainlab "
            f"weight-normalized layer instead (the layouts are converted). Received: {layer!r}."
        )
    cls = _CLASSES.get(type(layer))
    if cls is None:
        allowed = ", ".join(f"nn.{c.__name__}" for c in _CLASSES)
        raise TypeError(
            f"weight normalization supports {allowed}. Received: layer of type "
            f"{type(layer).__name__}."
        )
    if "weight" not in layer._parameters or not isinstance(layer.weight, nn.Parameter):
        raise ValueError(
            "weight_norm_ needs a layer whose weight is a plain Parameter; this one is "
            "parametrized or derived (torch's weight_norm?). Load its state_dict into a "
            "trainlab weight-normalized layer instead (the layouts are converted)."
        )
    w = layer._parameters.pop("weight").detach()
    layer.__class__ = cls
    layer.wn_mode = mode
    transposed, groups = isinstance(layer, _TRANSPOSED), int(getattr(layer, "groups", 1))
    rows = weight_rows(w, transposed, groups)
    if mode == "cwn":
        rows = rows - rows.mean(dim=1, keepdim=True)
    g = torch.ones(rows.shape[0], dtype=w.dtype, device=w.device) if mode == "normprop" \
        else rows.norm(dim=1)
    layer.register_parameter("weight_g", nn.Parameter(g))
    layer.register_parameter("weight_v", nn.Parameter(w.clone()))
    if mode == "normprop" and layer.bias is not None:
        with torch.no_grad():
            layer.bias.zero_()
    return layer


@torch.no_grad()
def remove_weight_norm_(layer: nn.Module) -> nn.Module:
    """Bake the computed weight into a plain ``weight`` Parameter in place; return the layer
    (now of its original torch class). Used by :func:`trainlab.nn.fold.fold_norms`."""
    if not is_weight_normalized(layer):
        raise ValueError(f"layer is not weight-normalized. Received: {layer!r}.")
    w = layer.weight.detach().clone()
    del layer._parameters["weight_g"], layer._parameters["weight_v"]
    layer.__class__ = _PLAIN[type(layer)]
    del layer.__dict__["wn_mode"]
    layer.weight = nn.Parameter(w)
    return layer


# -- state-dict layouts ----------------------------------------------------------------------------
def _convert_weight_keys(layer: _WeightNormMixin, sd: dict, prefix: str) -> None:
    """Rewrite, in ``sd``, any foreign layout of this layer's weight into ours."""
    g_key, v_key = prefix + "weight_g", prefix + "weight_v"
    p0 = prefix + "parametrizations.weight.original0"
    p1 = prefix + "parametrizations.weight.original1"
    tp, gr = layer._transposed, layer._groups
    if p0 in sd and p1 in sd:  # torch.nn.utils.parametrizations.weight_norm, any dim
        g, v = sd.pop(p0), sd.pop(p1)
    elif g_key in sd and v_key in sd and sd[g_key].dim() > 1:  # deprecated hook layout
        g, v = sd.pop(g_key), sd.pop(v_key)
    elif prefix + "weight" in sd and g_key not in sd:  # a plain layer's checkpoint
        g, v = None, sd.pop(prefix + "weight")
    else:
        return
    per_row = g is not None and not tp and g.shape[0] == v.shape[0] \
        and math.prod(g.shape) == g.shape[0]  # fmt: skip
    if per_row and layer.wn_mode != "cwn":  # torch's dim=0 on Linear/Conv: our rows, v kept
        sd[g_key], sd[v_key] = g.reshape(-1), v
        return
    w = v if g is None else _torch_wn_weight(g, v)
    rows = weight_rows(w.to(torch.float64), tp, gr)
    if layer.wn_mode == "cwn":
        mean = rows.mean(dim=1)
        if (mean.abs() > 1e-6 * rows.abs().amax(dim=1).clamp_min(1e-30)).any():
            warnings.warn(
                "loading a weight whose rows do not sum to zero into the centered weight-"
                f"normalized layer {prefix.rstrip('.') or '<root>'!r}: CWN centres every row, "
                "so the loaded layer computes the centred weight, not the checkpoint's.",
                stacklevel=4,
            )
        rows = rows - rows.mean(dim=1, keepdim=True)
    sd[v_key] = w
    sd[g_key] = rows.norm(dim=1).to(w.dtype)


def _torch_wn_weight(g: Tensor, v: Tensor) -> Tensor:
    """The weight ``g * v / ||v||`` of torch's weight norm, whose ``dim`` is the one
    dimension where ``g`` is not 1 (``v``'s norm is over all the others)."""
    dims = [d for d in range(v.dim()) if g.shape[d] == 1 and v.shape[d] != 1]
    if g.dim() != v.dim() or any(g.shape[d] not in (1, v.shape[d]) for d in range(v.dim())):
        raise ValueError(
            "a torch weight_norm g must have v's rank with size 1 or v's size in every "
            f"dimension. Received: g of shape {tuple(g.shape)}, v of shape {tuple(v.shape)}."
        )
    norm = torch.linalg.vector_norm(v, dim=dims, keepdim=True) if dims else v.abs()
    return g * v / norm


def to_torch_weight_norm_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """``model.state_dict()`` with every weight-normalized layer in the layout of
    ``torch.nn.utils.parametrizations.weight_norm(layer)`` (its default ``dim=0``).

    Linear/Conv WN layers map one to one (``original0 = g`` reshaped to ``(C_out, 1, ...)``,
    ``original1 = v``); CWN layers give ``original1 = v - mean(v)`` per row (the same function
    under torch's plain WN); transposed convolutions, where torch's ``dim=0`` is the input
    channel, give ``original1 = w`` and ``original0 = ||w||`` over torch's dims (same weight).
    """
    sd = model.state_dict()
    for name, m in model.named_modules():
        if not is_weight_normalized(m):
            continue
        p = f"{name}." if name else ""
        g, v = sd.pop(p + "weight_g"), sd.pop(p + "weight_v")
        keep = (-1,) + (1,) * (v.dim() - 1)
        if m._transposed:  # torch's dim=0 is the input channel: give it the weight itself
            v = m.weight.detach().clone()
            g = torch.linalg.vector_norm(v, dim=list(range(1, v.dim())), keepdim=True)
        elif m.wn_mode == "cwn":
            rows = weight_rows(v)
            v = (rows - rows.mean(dim=1, keepdim=True)).reshape(v.shape)
            g = g.reshape(keep)
        else:
            g = g.reshape(keep)
        sd[p + "parametrizations.weight.original0"] = g
        sd[p + "parametrizations.weight.original1"] = v
    return sd


# -- data-dependent initialization -----------------------------------------------------------------
@torch.no_grad()
def weight_norm_init_(
    model: nn.Module, x: Tensor, init_scale: float = 1.0, eps: float = 1e-8
) -> dict[str, tuple[float, float]]:
    """Salimans & Kingma's data-dependent init of every WN/CWN layer of ``model``, in place.

    One forward pass of the batch ``x``: just before each weight-normalized layer runs, its
    ``g`` is set to 1 and its bias to 0, so it outputs ``t = v . x / ||v||``; just after, per
    output unit (statistics over the batch and spatial positions), ``g = s / sigma[t]`` and
    ``b = -mu[t] s / sigma[t]`` (``s = init_scale``) and the output is replaced by
    ``s (t - mu[t]) / sigma[t]``, which the following layers see. A layer without bias gets
    only ``g``. NormProp layers are data-independent and left alone.

    Returns ``{layer name: (mu, sigma)}`` averaged over units, for logging.
    """
    if not isinstance(init_scale, (int, float)) or isinstance(init_scale, bool) \
            or not init_scale > 0:  # fmt: skip
        raise ValueError(
            f"init_scale must be a positive number. Received: init_scale={init_scale!r}."
        )
    layers = [(n, m) for n, m in model.named_modules()
              if is_weight_normalized(m) and m.wn_mode != "normprop"]
    if not layers:
        raise ValueError(
            "weight_norm_init_ found no weight-normalized layer in the model (build it with "
            "norm='wn' or 'cwn', or call weight_norm_ on its layers)."
        )
    stats: dict[str, tuple[float, float]] = {}
    handles = []

    def pre(name: str):
        def hook(m: nn.Module, inputs: Any) -> None:
            m.weight_g.fill_(1.0)
            if m.bias is not None:
                m.bias.zero_()
        return hook

    def post(name: str):
        def hook(m: nn.Module, inputs: Any, out: Tensor) -> Tensor:
            dims = [0, *range(2, out.dim())]
            per_unit = out.numel() // max(out.shape[1], 1)
            if per_unit < 2:
                raise ValueError(
                    f"weight_norm_init_ needs more than one value per unit to estimate the mean "
                    f"and std of {name!r}'s outputs. Received: output of shape "
                    f"{tuple(out.shape)}; pass a batch of several examples."
                )
            mu = out.mean(dim=dims)
            sigma = out.var(dim=dims, unbiased=False).add(eps).sqrt()
            m.weight_g.copy_(init_scale / sigma)
            view = [1, -1] + [1] * (out.dim() - 2)
            if m.bias is not None:
                m.bias.copy_(-mu * init_scale / sigma)
                new = (out - mu.view(view)) * (init_scale / sigma).view(view)
            else:
                new = out * (init_scale / sigma).view(view)
            stats[name] = (float(mu.mean()), float(sigma.mean()))
            return new
        return hook

    try:
        for name, m in layers:
            handles.append(m.register_forward_pre_hook(pre(name)))
            handles.append(m.register_forward_hook(post(name)))
        model(x)
    finally:
        for h in handles:
            h.remove()
    return stats


# -- registry --------------------------------------------------------------------------------------
def _wn(layer: nn.Module) -> nn.Module:
    """Weight normalization of ``layer`` (in place): ``w = g v / ||v||``."""
    return weight_norm_(layer, mode="wn")


def _cwn(layer: nn.Module) -> nn.Module:
    """Centered weight normalization of ``layer`` (in place)."""
    return weight_norm_(layer, mode="cwn")


_WEIGHT_META: Mapping[str, Any] = {
    "kind": "weight", "needs_batch_stats": False, "running_stats": False, "min_rank": 2,
}
NORMS.add(
    "wn",
    _wn,
    description="weight norm: w = g v/||v|| per output unit (reparametrizes Linear/Conv)",
    reference="Salimans & Kingma 2016",
    aliases=("weightnorm", "weight_norm"),
    meta=dict(_WEIGHT_META),
)
NORMS.add(
    "cwn",
    _cwn,
    description="centered weight norm: w = g (v - mean v)/||v - mean v|| per output unit",
    reference="Huang, Liu, Liu, Lang & Tao 2017",
    aliases=("centered_weight_norm", "centred_weight_norm"),
    meta=dict(_WEIGHT_META),
)
NORMS.add(
    "wn_mobn",
    _wn,
    description="weight norm + mean-only batch norm in the norm slot (the WN paper's advice)",
    reference="Salimans & Kingma 2016, §2.2",
    aliases=("wn_mean_only_bn", "wn+mobn"),
    meta={**_WEIGHT_META, "needs_batch_stats": True, "running_stats": True, "slot": "mobn"},
)
