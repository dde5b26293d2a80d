"""trainlab.nn.kinds: one answer to "is this a norm?" and "is this a weight layer?"."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import trainlab.init.apply as init_apply
import trainlab.probes.base as probes_base
from trainlab.nn.activations import ACTIVATIONS, Maxout
from trainlab.nn.kinds import (
    TORCH_NORM_TYPES,
    WEIGHT_LAYER_TYPES,
    is_norm,
    is_weight_layer,
    norm_types,
    weight_layers,
)
from trainlab.nn.natural import WhitenedLinear
from trainlab.nn.norms import NORMS, LayerNorm
from trainlab.nn.recurrent import LSTM, RECURRENT_NORMS, NoRecurrentNorm
from trainlab.nn.weight_norm import WeightNormLinear, weight_norm_

C = 4


def _built_norms() -> list[tuple[str, nn.Module, bool]]:
    """``(label, module, is a norm)`` for what every registered norm puts in a model."""
    out = []
    for e in NORMS:
        if e.meta.get("kind") == "weight":  # reparametrizes a layer; the slot holds the norm
            out.append((f"norm:{e.name}", e.build(nn.Linear(C, C)), False))
            slot = e.meta.get("slot")
            if slot is not None:
                module = NORMS.build(slot, C) if isinstance(slot, str) else slot(C)
                out.append((f"norm:{e.name}.slot", module, True))
        else:
            out.append((f"norm:{e.name}", e.build(C), e.name != "none"))
    for e in RECURRENT_NORMS:
        out.append((f"recurrent_norm:{e.name}", e.build(C, slot="ih"), e.name != "none"))
    return out


@pytest.mark.parametrize("label,module,expected", _built_norms(),
                         ids=[x[0] for x in _built_norms()])
def test_every_registered_norm_is_a_norm(label, module, expected):
    assert is_norm(module) is expected, (label, module)


def test_registered_norms_are_read_from_the_registries():
    names = {c.__name__ for c in norm_types()}
    assert {"LayerNorm", "GroupNorm", "MeanOnlyBatchNorm", "NormPropStandardize",
            "FrameBatchNorm", "SequenceBatchNorm", "RecurrentLayerNorm"} <= names
    assert set(TORCH_NORM_TYPES) <= set(norm_types())
    assert nn.Identity not in norm_types() and NoRecurrentNorm not in norm_types()


@pytest.mark.parametrize("module", [
    nn.BatchNorm1d(C), nn.BatchNorm2d(C), nn.BatchNorm3d(C), nn.SyncBatchNorm(C),
    nn.LazyBatchNorm2d(), nn.InstanceNorm1d(C), nn.InstanceNorm2d(C, affine=True),
    nn.InstanceNorm3d(C), nn.LayerNorm(C), nn.GroupNorm(2, C), nn.LocalResponseNorm(2),
    *([nn.RMSNorm(C)] if hasattr(nn, "RMSNorm") else []),
], ids=type)
def test_torch_norms_are_norms(module):
    assert is_norm(module)


def _activations() -> list[nn.Module]:
    return [ACTIVATIONS.build(e.name, C, C) if e.meta["replaces_linear"] else e.build()
            for e in ACTIVATIONS]


@pytest.mark.parametrize("module", [
    nn.Linear(C, C), nn.Conv2d(C, C, 3), nn.Embedding(5, C), nn.LSTM(C, C),
    nn.MultiheadAttention(C, 2), nn.Identity(), nn.Sequential(nn.Linear(C, C), nn.BatchNorm1d(C)),
    WeightNormLinear(C, C), weight_norm_(nn.Conv2d(C, C, 3)), NoRecurrentNorm(C),
    nn.ReLU(), nn.Tanh(), nn.PReLU(), *_activations(), "BatchNorm", None,
], ids=lambda m: type(m).__name__)
def test_layers_activations_and_others_are_not_norms(module):
    assert not is_norm(module)


def test_a_foreign_norm_counts_by_name_unless_it_is_a_weight_layer():
    class FilterResponseNorm(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tau = nn.Parameter(torch.zeros(C))

    class NormalizedLinear(nn.Linear):
        pass

    assert is_norm(FilterResponseNorm())
    assert not is_norm(NormalizedLinear(C, C)) and is_weight_layer(NormalizedLinear(C, C))


# -- weight layers -------------------------------------------------------------------------
class Mixed(nn.Module):
    """One of each: what weight_layers returns is stated in WEIGHT_LAYERS below."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, C)
        self.lstm = nn.LSTM(C, C, batch_first=True)
        self.trnn = LSTM(C, C)  # trainlab's recurrent layer: gate matrices, no weight layer
        self.attn = nn.MultiheadAttention(C, 2, batch_first=True)
        self.conv = nn.Conv2d(1, C, 3)
        self.deconv = nn.ConvTranspose2d(C, 1, 3)
        self.wn = weight_norm_(nn.Linear(C, C))
        self.twn = nn.utils.parametrizations.weight_norm(nn.Linear(C, C))
        self.bilinear = nn.Bilinear(C, C, C)
        self.maxout = Maxout(C, C, k=2)
        self.whitened = WhitenedLinear(C, C)
        self.norm = LayerNorm(C)
        self.act = nn.ReLU()
        self.head = nn.Linear(C, 2)


WEIGHT_LAYERS = ["embed", "attn.out_proj", "conv", "deconv", "wn", "twn", "bilinear",
                 "maxout.linear", "whitened", "head"]


def test_weight_layers_on_a_mixed_model():
    model = Mixed()
    got = weight_layers(model)
    assert [n for n, _ in got] == WEIGHT_LAYERS
    assert all(is_weight_layer(m) for _, m in got)
    for name in ("lstm", "trnn", "attn", "maxout", "norm", "act", ""):
        assert not is_weight_layer(model.get_submodule(name)), name


def test_old_names_are_the_one_definition():
    assert init_apply.weight_layers is weight_layers
    assert probes_base.weight_layers is weight_layers
    assert init_apply.WEIGHT_LAYER_TYPES is WEIGHT_LAYER_TYPES
    import trainlab.init as init

    assert init.weight_layers is weight_layers and init.WEIGHT_LAYER_TYPES is WEIGHT_LAYER_TYPES


def test_a_layer_without_a_weight_tensor_is_no_weight_layer():
    lin = nn.Linear(C, C)
    del lin.weight
    lin.weight = None
    assert not is_weight_layer(lin) and not is_weight_layer("Linear")
