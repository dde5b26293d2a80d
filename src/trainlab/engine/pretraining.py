"""Greedy layer-wise pre-training (lecture 004, Module 7.2), then fine-tuning.

The lecture's recipe: train the weights between ``x`` and ``h1`` with an unsupervised
objective (reconstruct ``x`` from ``h1``), fix them and do the same for ``h1 -> h2`` on the
codes ``h1``, and so on up to the last hidden layer; then add the output layer and train the
whole network on the task ("we have initialized the weights of the network using the greedy
unsupervised objective and are now fine tuning these weights"). Hinton, Osindero & Teh 2006
used restricted Boltzmann machines; Bengio, Lamblin, Popovici & Larochelle 2007 autoencoders;
Vincent et al. 2008 denoising autoencoders; Erhan et al. 2010 measured why it helps.

Methods (registry :data:`PRETRAINERS`, family ``pretrain``):

- ``autoencoder``: encoder = the network's own layer ``h = f(W x + c)`` (its norm and
  activation included), decoder ``x̂ = W' h + b`` with ``W' = Wᵀ`` (``tied=True``, Bengio et al.
  2007) or a separate matrix; loss ``||x̂ - x||²`` (``loss="mse"``, the mean over elements) or
  the cross-entropy of ``σ(x̂)`` against ``x ∈ [0, 1]`` (``loss="bce"``).
- ``denoising``: the same, but the encoder reads a corrupted ``x̃`` and the loss compares the
  reconstruction with the clean ``x`` (Vincent et al. 2008): ``corruption="mask"`` zeroes each
  input with probability ``noise`` (default 0.25), ``"gaussian"`` adds ``N(0, noise²)``.
- ``rbm``: the layer's ``W`` and ``c`` are an RBM's weights and hidden biases (plus visible
  biases ``b``), trained by contrastive divergence CD-k (Hinton 2002): energy
  ``E(v, h) = -bᵀv - cᵀh - hᵀW v`` (Bernoulli visibles) or ``||v - b||²/2 - cᵀh - hᵀW v``
  (``visible="gaussian"``, unit variance; standardize the data), see :func:`cd_k`.

Which models: an :func:`~trainlab.models.builders.mlp` (its ``block{i}`` are the layers, ``head``
is the output layer), or any ``nn.Sequential`` whose children are ``nn.Linear`` layers (or
maxout units) each followed by elementwise modules (activations, norms, dropout) — the last
Linear is the output layer, modules before the first one (``Flatten``) are applied to the
data first. :func:`linear_stack` finds the layers and names what it cannot handle.

During pre-training dropout modules are off (the denoising corruption plays that role) and
the codes handed to the next layer are the trained layer's own outputs in eval mode, computed
once for the whole training set.

Example::

    >>> model = mlp(784, [500, 500, 500], 10, activation="sigmoid")
    >>> hist = pretrain(model, dataset, "denoising", steps=1000, noise=0.25)
    >>> hist.pretrain_curves()["block1"]           # (steps, clean reconstruction losses)
    >>> Trainer(model, "sgd", lr=0.1).fit(dataset, epochs=10)   # fine-tuning

``trainlab train --pretrain denoising`` does both in one run folder.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainlab.engine.history import History
from trainlab.nn.activations import Maxout
from trainlab.optim import build_optimizer
from trainlab.registry import Registry
from trainlab.utils import resolve_device

__all__ = [
    "CORRUPTIONS",
    "PRETRAINERS",
    "CDResult",
    "StackLayer",
    "TiedDecoder",
    "cd_k",
    "check_pretrainable",
    "corrupt",
    "linear_stack",
    "pretrain",
    "rbm_free_energy",
    "rbm_hidden_probs",
    "rbm_visible_mean",
]

PRETRAINERS = Registry("pretrain")

#: Corruptions of the denoising autoencoder.
CORRUPTIONS = ("mask", "gaussian")
_VISIBLE = ("bernoulli", "gaussian")
_LOSSES = ("mse", "bce")

_SUPPORTED = (
    "an mlp from trainlab.models.builders, or an nn.Sequential of nn.Linear layers (or maxout "
    "units) each followed by elementwise modules (activations, norms, dropout), the last "
    "Linear being the output layer"
)
# modules that make a model something other than a stack of fully connected layers
_FOREIGN = (nn.modules.conv._ConvNd, nn.RNNBase, nn.RNNCellBase, nn.Embedding,
            nn.MultiheadAttention, nn.EmbeddingBag)


# -- the maths: corruption and RBM -----------------------------------------------------------
def corrupt(x: Tensor, corruption: str = "mask", noise: float = 0.25, *,
            generator: torch.Generator | None = None) -> Tensor:
    """The denoising autoencoder's corrupted input ``x̃`` (Vincent et al. 2008).

    ``"mask"``: ``x̃ = m ⊙ x`` with ``m_i ~ Bernoulli(1 - noise)`` (masking noise: a fraction
    ``noise`` of the inputs set to 0, no rescaling). ``"gaussian"``: ``x̃ = x + noise · ε``,
    ``ε ~ N(0, I)`` (isotropic Gaussian noise of std ``noise``). ``noise = 0`` returns ``x``.
    """
    if corruption not in CORRUPTIONS:
        raise ValueError(f"corruption must be one of {CORRUPTIONS}. "
                         f"Received: corruption={corruption!r}.")
    if noise == 0:
        return x
    if corruption == "mask":
        keep = torch.full_like(x, 1.0 - noise)
        return x * torch.bernoulli(keep, generator=generator)
    eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return x + noise * eps


def rbm_hidden_probs(v: Tensor, weight: Tensor, hidden_bias: Tensor | None) -> Tensor:
    """``p(h_j = 1 | v) = σ(c_j + Σ_i W_ji v_i)``; ``weight`` is ``(hidden, visible)``, the
    layout of ``nn.Linear.weight``, so the RBM's ``W`` is the layer's weight."""
    return torch.sigmoid(F.linear(v, weight, hidden_bias))


def rbm_visible_mean(h: Tensor, weight: Tensor, visible_bias: Tensor,
                     visible: str = "bernoulli") -> Tensor:
    """``E[v | h]``: ``σ(b + Wᵀh)`` for Bernoulli visibles, ``b + Wᵀh`` for Gaussian ones
    (unit variance)."""
    a = h @ weight + visible_bias
    return torch.sigmoid(a) if visible == "bernoulli" else a


def rbm_free_energy(v: Tensor, weight: Tensor, hidden_bias: Tensor | None,
                    visible_bias: Tensor, visible: str = "bernoulli") -> Tensor:
    """Free energy ``F(v) = -log Σ_h e^{-E(v, h)}`` per row of ``v``, ``(N,)``:

    ``F(v) = -bᵀv - Σ_j softplus(c_j + W_j v)`` (Bernoulli visibles) and
    ``F(v) = ||v - b||² / 2 - Σ_j softplus(c_j + W_j v)`` (Gaussian, unit variance), so that
    ``p(v) ∝ e^{-F(v)}`` and ``-∂ log p(v) / ∂θ = ∂F(v)/∂θ - E_model[∂F/∂θ]``.
    """
    soft = F.softplus(F.linear(v, weight, hidden_bias)).sum(-1)
    if visible == "bernoulli":
        return -(v @ visible_bias) - soft
    return 0.5 * ((v - visible_bias) ** 2).sum(-1) - soft


@dataclass
class CDResult:
    """What :func:`cd_k` returns: the gradient estimates of the mean negative log-likelihood
    (ready for ``param.grad``, so an optimizer *descends*), the chain's last visible sample
    ``v_k`` and the one-step mean-field reconstruction error ``mean (v_0 - E[v | p(h|v_0)])²``."""

    grad_weight: Tensor
    grad_hidden_bias: Tensor
    grad_visible_bias: Tensor
    v_k: Tensor
    recon_error: Tensor


def cd_k(v0: Tensor, weight: Tensor, hidden_bias: Tensor | None, visible_bias: Tensor,
         k: int = 1, visible: str = "bernoulli", *,
         generator: torch.Generator | None = None) -> CDResult:
    """Contrastive divergence CD-k (Hinton 2002; Hinton 2010, "A Practical Guide").

    Start a Gibbs chain at the data ``v_0``: ``h_0 ~ p(h | v_0)``, then ``k`` times
    ``v_t ~ p(v | h_{t-1})``, ``h_t ~ p(h | v_t)``. The log-likelihood gradient
    ``⟨h vᵀ⟩_data - ⟨h vᵀ⟩_model`` is estimated with the hidden *probabilities*
    ``p(h | v)`` (lower variance, the same expectation) on both ends::

        ΔW = p(h|v_0)ᵀ v_0 / N - p(h|v_k)ᵀ v_k / N,   Δc = mean p(h|v_0) - mean p(h|v_k),
        Δb = mean v_0 - mean v_k

    and the returned gradients are ``-ΔW, -Δc, -Δb`` (descend them). As ``k → ∞`` the chain's
    end is a sample of the model and the estimate is unbiased (see the tests, which enumerate
    the states of a tiny RBM). Visibles are sampled (Bernoulli) or drawn from
    ``N(b + Wᵀh, 1)`` (``visible="gaussian"``). Everything runs without autograd.
    """
    if visible not in _VISIBLE:
        raise ValueError(f"visible must be one of {_VISIBLE}. Received: visible={visible!r}.")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an integer >= 1 (Gibbs steps). Received: k={k!r}.")
    with torch.no_grad():
        n = v0.shape[0]
        ph0 = rbm_hidden_probs(v0, weight, hidden_bias)
        h = torch.bernoulli(ph0, generator=generator)
        for t in range(k):
            mean = rbm_visible_mean(h, weight, visible_bias, visible)
            if visible == "bernoulli":
                v = torch.bernoulli(mean, generator=generator)
            else:
                v = mean + torch.randn(mean.shape, generator=generator, device=mean.device,
                                       dtype=mean.dtype)
            phk = rbm_hidden_probs(v, weight, hidden_bias)
            if t + 1 < k:
                h = torch.bernoulli(phk, generator=generator)
        g_w = (phk.t() @ v - ph0.t() @ v0) / n
        g_c = phk.mean(0) - ph0.mean(0)
        g_b = v.mean(0) - v0.mean(0)
        recon = rbm_visible_mean(ph0, weight, visible_bias, visible)
        err = ((v0 - recon) ** 2).mean()
    return CDResult(g_w, g_c, g_b, v, err)


# -- finding the layers -----------------------------------------------------------------------
@dataclass
class StackLayer:
    """One layer of a stack: ``module`` maps codes ``(N, in_features)`` to
    ``(N, out_features)``; ``weight_layer`` is its ``nn.Linear`` (or maxout unit)."""

    name: str
    module: nn.Module
    weight_layer: nn.Module
    in_features: int
    out_features: int

    @property
    def tieable(self) -> bool:
        """A decoder can use ``Wᵀ`` (a plain Linear; a maxout unit has k pieces per unit)."""
        return isinstance(self.weight_layer, nn.Linear)


def _is_weight_layer(m: nn.Module) -> bool:
    return isinstance(m, (nn.Linear, Maxout))


def _describe(model: nn.Module) -> str:
    return type(model).__name__


def _unsupported(model: nn.Module, why: str) -> ValueError:
    return ValueError(
        f"pre-training needs a stack of Linear layers: {_SUPPORTED}. Received: "
        f"{_describe(model)}, {why}."
    )


def _foreign_inside(m: nn.Module, label: str) -> str | None:
    """``"<label> is a Conv2d"`` / ``"<label> holds a Conv2d at 'a.b'"``, or None."""
    for name, sub in m.named_modules():
        if isinstance(sub, _FOREIGN):
            kind = type(sub).__name__
            return f"{label} is a {kind}" if not name else f"{label} holds a {kind} at {name!r}"
    return None


def linear_stack(model: nn.Module) -> tuple[nn.Module, list[StackLayer], StackLayer]:
    """``(prefix, hidden layers, output layer)`` of a stack of Linear layers.

    For an :func:`~trainlab.models.builders.mlp` the hidden layers are ``block1..blockL`` and the
    output layer ``head``; for a user's ``nn.Sequential`` each ``nn.Linear`` (or maxout unit)
    starts a layer that takes the elementwise modules after it, and the layer is named after
    its children (``"0+1"``). ``prefix`` (an ``nn.Sequential``, possibly empty) holds the
    modules before the first Linear. Raises ``ValueError`` naming the supported models and
    what was found instead: a model that is not an ``nn.Sequential``, one with convolutions,
    recurrent layers or embeddings, a block with two Linear layers, or no hidden layer.
    """
    if not isinstance(model, nn.Sequential):
        found = _foreign_inside(model, "which")
        why = found if found else "which is not an nn.Sequential of layers"
        raise _unsupported(model, why)
    prefix: list[tuple[str, nn.Module]] = []
    groups: list[list[tuple[str, nn.Module]]] = []
    for name, child in model.named_children():
        found = _foreign_inside(child, f"its child {name!r}")
        if found:
            raise _unsupported(model, found)
        inner = [(n, m) for n, m in child.named_modules() if _is_weight_layer(m)]
        # a maxout unit holds one nn.Linear: count outermost weight layers only
        outer = [(n, m) for n, m in inner
                 if not any(n != o and n.startswith(o + ".") for o, _ in inner if o)]
        if _is_weight_layer(child):
            groups.append([(name, child)])
        elif outer:
            children = list(child.named_children()) if isinstance(child, nn.Sequential) else []
            if (len(outer) != 1 or not children or children[0][1] is not outer[0][1]):
                where = ", ".join(f"{name}.{n}" for n, _ in outer)
                raise _unsupported(
                    model, f"its child {name!r} is not one Linear layer followed by elementwise "
                    f"modules (weight layers at {where})")
            groups.append([(name, child)])
        elif groups:
            groups[-1].append((name, child))
        else:
            prefix.append((name, child))
    if len(groups) < 2:
        raise _unsupported(model, f"which has {len(groups)} Linear layer(s) and so no hidden "
                           "layer to pre-train below its output layer")
    layers = [_make_layer(g) for g in groups]
    return nn.Sequential(*[m for _, m in prefix]), layers[:-1], layers[-1]


def _make_layer(group: list[tuple[str, nn.Module]]) -> StackLayer:
    first_name, first = group[0]
    if _is_weight_layer(first):
        weight = first
        name = "+".join(n for n, _ in group)
    else:  # a builder block: Sequential(linear, norm, act, [drop])
        weight = next(iter(first.children()))
        name = first_name
    module = first if len(group) == 1 else nn.Sequential(*[m for _, m in group])
    return StackLayer(name, module, weight, int(weight.in_features), int(weight.out_features))


def check_pretrainable(model: nn.Module, example: Tensor | None = None,
                       method: str = "autoencoder", tied: bool = True) -> list[StackLayer]:
    """Raise ``ValueError`` (naming the supported models) unless ``model`` can be pre-trained
    by ``method``; with ``example`` (a few inputs) also check that each layer maps
    ``(N, in_features)`` to ``(N, out_features)``. Returns the hidden layers."""
    entry = PRETRAINERS.get(method)
    prefix, hidden, head = linear_stack(model)
    if entry.name == "rbm" or tied:
        bad = [h.name for h in hidden if not h.tieable]
        if bad:
            what = "an RBM" if entry.name == "rbm" else "a tied decoder (Wᵀ)"
            raise ValueError(
                f"{what} needs plain nn.Linear layers, but layer(s) {', '.join(bad)} are maxout "
                "units (k affine pieces per unit). Use method 'autoencoder' or 'denoising' with "
                "tied=False for maxout networks."
            )
    if example is not None:
        modes = [(m, m.training) for m in model.modules()]
        model.eval()
        try:
            with torch.no_grad():
                h = prefix(example[:2])
                for layer in [*hidden, head]:
                    if h.dim() != 2 or h.shape[1] != layer.in_features:
                        raise ValueError(
                            f"pre-training: layer {layer.name!r} expects codes of shape "
                            f"(N, {layer.in_features}), but receives shape {tuple(h.shape)} "
                            f"(examples of shape {tuple(example.shape[1:])})."
                        )
                    h = layer.module(h)
        finally:
            for m, mode in modes:
                m.train(mode)
    return hidden


# -- decoders ---------------------------------------------------------------------------------
class TiedDecoder(nn.Module):
    """The decoder ``x̂ = Wᵀ h + b`` of an autoencoder whose encoder is ``linear``: it owns
    only the visible bias ``b``; ``W`` is the encoder's weight itself (not a copy), so both
    paths' gradients add up in ``linear.weight.grad``."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self._encoder = [linear]  # a list: not registered as a submodule (no double count)
        self.bias = nn.Parameter(torch.zeros(linear.in_features, device=linear.weight.device,
                                             dtype=linear.weight.dtype))

    @property
    def weight(self) -> Tensor:
        """``Wᵀ``, a view of the encoder's weight ``(in_features, out_features)``."""
        return self._encoder[0].weight.t()

    def forward(self, h: Tensor) -> Tensor:
        return F.linear(h, self.weight, self.bias)

    def extra_repr(self) -> str:
        lin = self._encoder[0]
        return f"tied to Linear({lin.in_features}, {lin.out_features})"


# -- training one layer ----------------------------------------------------------------------
@dataclass
class _Ctx:
    """What every per-layer trainer gets."""

    steps: int
    batch_size: int
    optimizer: Any
    lr: float | None
    log_every: int
    generator: torch.Generator
    should_stop: Callable[[], bool]
    rows: list[dict[str, Any]]
    t0: float
    method: str
    bar: Any = None


def _batches(n: int, bs: int, ctx: _Ctx, device: torch.device):
    while True:
        perm = torch.randperm(n, generator=ctx.generator, device=device)
        for i in range(0, n - bs + 1, bs):  # bs <= n: whole batches only
            yield perm[i:i + bs]


def _dropout_off(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            m.eval()


def _log(ctx: _Ctx, layer: str, step: int, window: list[Tensor], recon: float, **extra: Any):
    train = float(torch.stack(window).mean()) if window else None  # step 0: no window
    row = {"method": ctx.method, "layer": layer, "step": step, "train_loss": train,
           "recon_loss": recon, "time": round(time.perf_counter() - ctx.t0, 4), **extra}
    ctx.rows.append(row)


def _autoencoder_layer(layer: StackLayer, codes: Tensor, ctx: _Ctx, *, tied: bool = True,
                       corruption: str = "mask", noise: float = 0.0,
                       loss: str = "mse") -> None:
    """Train ``layer`` as the encoder of a (denoising) autoencoder on ``codes``."""

    enc = layer.module
    if tied:
        dec: nn.Module = TiedDecoder(layer.weight_layer)
    else:
        w = layer.weight_layer.weight
        dec = nn.Linear(layer.out_features, layer.in_features, device=w.device, dtype=w.dtype)
    params = list(dict.fromkeys([*enc.parameters(), *dec.parameters()]))
    opt = build_optimizer(ctx.optimizer, params, lr=ctx.lr)
    lossf = F.mse_loss if loss == "mse" else F.binary_cross_entropy_with_logits
    held = codes[: min(len(codes), 1024)]  # the curve: clean reconstruction of fixed rows

    def clean_recon() -> float:
        enc.eval()
        with torch.no_grad():
            v = float(lossf(dec(enc(held)), held))
        enc.train()
        _dropout_off(enc)
        return v

    enc.train()
    _dropout_off(enc)
    _log(ctx, layer.name, 0, [], clean_recon())
    window: list[Tensor] = []
    batches = _batches(len(codes), ctx.batch_size, ctx, codes.device)
    for step in range(1, ctx.steps + 1):
        xb = codes[next(batches)]
        xin = corrupt(xb, corruption, noise, generator=ctx.generator)
        out = lossf(dec(enc(xin)), xb)
        opt.zero_grad(set_to_none=True)
        out.backward()
        opt.step()
        window.append(out.detach())
        if ctx.bar is not None:
            ctx.bar.update(1)
        stop = ctx.should_stop()
        if step % ctx.log_every == 0 or step == ctx.steps or stop:
            _log(ctx, layer.name, step, window, clean_recon())
            window = []
            if not math.isfinite(ctx.rows[-1]["train_loss"]):
                raise ValueError(
                    f"pre-training layer {layer.name!r} diverged at step {step} (loss "
                    f"{ctx.rows[-1]['train_loss']}); lower the pre-training lr "
                    f"(pretrain.lr, now {ctx.lr}).")
        if stop:
            return


def _rbm_layer(layer: StackLayer, codes: Tensor, ctx: _Ctx, *, k: int = 1,
               visible: str = "bernoulli") -> None:
    """Train ``layer``'s weight and bias as an RBM by CD-k on ``codes``."""

    lin = layer.weight_layer
    w, c = lin.weight, lin.bias
    b = torch.zeros(layer.in_features, device=w.device, dtype=w.dtype, requires_grad=True)
    params = [p for p in (w, c, b) if p is not None]
    opt = build_optimizer(ctx.optimizer, params, lr=ctx.lr)
    held = codes[: min(len(codes), 1024)]

    def recon() -> float:
        with torch.no_grad():
            ph = rbm_hidden_probs(held, w, c)
            return float(((held - rbm_visible_mean(ph, w, b, visible)) ** 2).mean())

    _log(ctx, layer.name, 0, [], recon())
    window: list[Tensor] = []
    batches = _batches(len(codes), ctx.batch_size, ctx, codes.device)
    for step in range(1, ctx.steps + 1):
        v0 = codes[next(batches)]
        res = cd_k(v0, w.detach(), None if c is None else c.detach(), b.detach(), k, visible,
                   generator=ctx.generator)
        opt.zero_grad(set_to_none=True)
        w.grad = res.grad_weight
        if c is not None:
            c.grad = res.grad_hidden_bias
        b.grad = res.grad_visible_bias
        opt.step()
        window.append(res.recon_error)
        if ctx.bar is not None:
            ctx.bar.update(1)
        stop = ctx.should_stop()
        if step % ctx.log_every == 0 or step == ctx.steps or stop:
            _log(ctx, layer.name, step, window, recon())
            window = []
            if not math.isfinite(ctx.rows[-1]["train_loss"]):
                raise ValueError(
                    f"RBM pre-training of layer {layer.name!r} diverged at step {step}; lower "
                    f"the pre-training lr (pretrain.lr, now {ctx.lr}).")
        if stop:
            return


PRETRAINERS.add(
    "autoencoder", _autoencoder_layer,
    description="each hidden layer trained in turn as an autoencoder (tied Wᵀ decoder by "
                "default) on the previous layer's codes",
    reference="Bengio, Lamblin, Popovici & Larochelle 2007; lecture 004 Module 7.2",
    aliases=("ae", "stacked_autoencoder"),
    defaults={"noise": 0.0},
    meta={"options": ("tied", "loss", "corruption", "noise")},
)
PRETRAINERS.add(
    "denoising", _autoencoder_layer,
    description="stacked denoising autoencoders: reconstruct the clean codes from corrupted "
                "ones (masking or Gaussian noise)",
    reference="Vincent, Larochelle, Bengio & Manzagol 2008",
    aliases=("dae", "denoising_autoencoder", "sdae"),
    defaults={"noise": 0.25, "corruption": "mask"},
    meta={"options": ("tied", "loss", "corruption", "noise")},
)
PRETRAINERS.add(
    "rbm", _rbm_layer,
    description="each hidden layer trained in turn as a restricted Boltzmann machine by "
                "contrastive divergence CD-k (a deep belief net)",
    reference="Hinton, Osindero & Teh 2006; Hinton 2002 (contrastive divergence)",
    aliases=("dbn", "cd"),
    defaults={"k": 1, "visible": "bernoulli"},
    meta={"options": ("k", "visible")},
)


# -- the greedy loop --------------------------------------------------------------------------
def _inputs(data: Any) -> Tensor:
    if isinstance(data, Tensor):
        return data
    if hasattr(data, "x_train"):
        return data.x_train
    if isinstance(data, (tuple, list)) and data and isinstance(data[0], Tensor):
        return data[0]
    raise TypeError("data must be a tensor of inputs, a trainlab Dataset or a tuple "
                    f"(x_train, ...). Received: {type(data).__name__}.")


@torch.no_grad()
def _codes(module: nn.Module, x: Tensor, chunk: int = 4096) -> Tensor:
    was = module.training
    module.eval()
    out = torch.cat([module(x[i:i + chunk]) for i in range(0, len(x), chunk)]) if len(x) else x
    module.train(was)
    return out


def _check_options(method: str, *, steps: Any, batch_size: Any, log_every: Any, noise: Any,
                   corruption: Any, loss: Any, k: Any, visible: Any) -> None:
    for name, v in (("steps", steps), ("batch_size", batch_size), ("log_every", log_every),
                    ("k", k)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1. Received: {name}={v!r}.")
    if corruption not in CORRUPTIONS:
        raise ValueError(f"corruption must be one of {CORRUPTIONS}. "
                         f"Received: corruption={corruption!r}.")
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not math.isfinite(noise):
        raise ValueError(f"noise must be a finite number. Received: noise={noise!r}.")
    if corruption == "mask" and not 0.0 <= noise < 1.0:
        raise ValueError(f"noise of the 'mask' corruption is the fraction of inputs zeroed, "
                         f"in [0, 1). Received: noise={noise!r}.")
    if noise < 0:
        raise ValueError(f"noise of the 'gaussian' corruption is a std >= 0. "
                         f"Received: noise={noise!r}.")
    if loss not in _LOSSES:
        raise ValueError(f"loss must be one of {_LOSSES}. Received: loss={loss!r}.")
    if visible not in _VISIBLE:
        raise ValueError(f"visible must be one of {_VISIBLE}. Received: visible={visible!r}.")
    if method == "denoising" and noise == 0:
        warnings.warn("method 'denoising' with noise=0 is a plain autoencoder.", UserWarning,
                      stacklevel=3)


def pretrain(
    model: nn.Module,
    data: Any,
    method: str = "autoencoder",
    *,
    steps: int = 500,
    batch_size: int = 128,
    optimizer: Any = "adam",
    lr: float | None = None,
    tied: bool = True,
    loss: str = "mse",
    corruption: str | None = None,
    noise: float | None = None,
    k: int | None = None,
    visible: str | None = None,
    log_every: int = 50,
    seed: int = 0,
    device: str | torch.device | None = None,
    history: History | None = None,
    should_stop: Callable[[], bool] | None = None,
    progress: bool | None = False,
) -> History:
    """Greedy layer-wise pre-training of ``model``'s hidden layers, in place.

    Each hidden layer (see :func:`linear_stack`) is trained for ``steps`` minibatch steps of
    ``batch_size`` rows of the previous layer's codes (the data for the first), by ``method``
    (:data:`PRETRAINERS`: ``"autoencoder"``, ``"denoising"``, ``"rbm"``; options as in the
    module docstring; ``None`` takes the method's default: ``noise`` 0 for ``autoencoder``,
    0.25 masking for ``denoising``, ``k=1`` Bernoulli visibles for ``rbm``). The output layer
    is left as it is, for fine-tuning. ``optimizer`` and ``lr`` are as in
    :func:`trainlab.optim.build_optimizer` (``lr=None``: the optimizer's default), one new
    optimizer per layer. ``should_stop()`` is polled after every step (an interrupt): the
    layers trained so far are kept and the rest are skipped.

    Returns ``history`` (a new :class:`~trainlab.train.History` when ``None``) with one row
    per ``log_every`` steps and layer appended to ``history.pretrain``: ``method``, ``layer``,
    ``step``, ``train_loss`` (mean training objective since the previous row: reconstruction
    of the corrupted input, or the RBM's one-step reconstruction error; ``None`` at step 0),
    ``recon_loss`` (the
    clean reconstruction loss of the first 1024 rows, recorded at step 0 too), ``time``.
    """
    entry = PRETRAINERS.get(method)
    opts = dict(entry.defaults)
    for key, v in (("corruption", corruption), ("noise", noise), ("k", k), ("visible", visible)):
        if v is not None:
            opts[key] = v
    opts.setdefault("corruption", "mask")
    opts.setdefault("noise", 0.0)
    _check_options(entry.name, steps=steps, batch_size=batch_size, log_every=log_every,
                   loss=loss, k=opts.get("k", 1), visible=opts.get("visible", "bernoulli"),
                   noise=opts["noise"], corruption=opts["corruption"])
    x = _inputs(data)
    if device is None:
        p = next(model.parameters(), None)
        dev = p.device if p is not None else torch.device("cpu")
    else:
        dev = resolve_device(device)
        model.to(dev)
    x = x.to(dev)
    hidden = check_pretrainable(model, x, entry.name, tied)
    prefix, _, _ = linear_stack(model)
    if entry.name == "rbm":
        layer_opts = {"k": opts["k"], "visible": opts["visible"]}
    else:
        layer_opts = {"tied": tied, "loss": loss, "corruption": opts["corruption"],
                      "noise": float(opts["noise"])}
    history = history if history is not None else History()
    gen = torch.Generator(device=dev)
    gen.manual_seed(seed)
    ctx = _Ctx(steps, min(batch_size, len(x)), optimizer, lr, log_every, gen,
               should_stop or (lambda: False), history.pretrain, time.perf_counter(),
               entry.name)
    if progress:
        from tqdm.auto import tqdm

        ctx.bar = tqdm(total=steps * len(hidden), unit="step", desc=f"pretrain {entry.name}",
                       leave=False)
    modes = [(m, m.training) for m in model.modules()]
    try:
        codes = _codes(prefix, x)
        for i, layer in enumerate(hidden):
            if i == 0:
                _check_codes(entry.name, layer, codes, opts, loss)
            entry.factory(layer, codes, ctx, **layer_opts)
            if entry.name == "rbm":
                _check_sigmoid(layer, codes)
            if ctx.should_stop():
                break
            if i + 1 < len(hidden):
                codes = _codes(layer.module, codes)
    finally:
        for m, mode in modes:
            m.train(mode)
        if ctx.bar is not None:
            ctx.bar.close()
    return history


def _check_codes(method: str, layer: StackLayer, codes: Tensor, opts: dict[str, Any],
                 loss: str) -> None:
    """Warn for data that does not suit the first layer's visible model."""
    lo, hi = float(codes.min()), float(codes.max())
    in_unit = lo >= 0.0 and hi <= 1.0
    if method == "rbm" and opts.get("visible") == "bernoulli" and not in_unit:
        warnings.warn(
            f"RBM with Bernoulli visible units on data in [{lo:.3g}, {hi:.3g}], outside [0, 1]: "
            "use visible='gaussian' (pretrain.visible) on standardized data.",
            UserWarning, stacklevel=3)
    if method != "rbm" and loss == "bce" and not in_unit:
        warnings.warn(
            f"loss='bce' reconstructs values in [0, 1] but layer {layer.name!r}'s inputs lie in "
            f"[{lo:.3g}, {hi:.3g}]: use loss='mse'.", UserWarning, stacklevel=3)


def _check_sigmoid(layer: StackLayer, codes: Tensor) -> None:
    """An RBM's hidden units are σ(Wv + c); warn when the layer computes something else."""
    v = codes[:64]
    with torch.no_grad():
        was = layer.module.training
        layer.module.eval()
        got = layer.module(v)
        layer.module.train(was)
        want = rbm_hidden_probs(v, layer.weight_layer.weight, layer.weight_layer.bias)
    if got.shape != want.shape or not torch.allclose(got, want, atol=1e-5):
        warnings.warn(
            f"RBM pre-training treats layer {layer.name!r}'s hidden units as sigmoid(Wv + c), "
            "but the layer computes something else (another activation, or a norm): its "
            "weights carry over, and the next layer is trained on the layer's own outputs.",
            UserWarning, stacklevel=3)
