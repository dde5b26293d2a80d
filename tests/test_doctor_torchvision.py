"""The doctor on real torchvision models (random weights, nothing downloaded): it completes,
and their zero-initialized heads (ViT, as timm and Fixup do) are not symmetric units."""

from __future__ import annotations

import pytest
import torch

from trainlab.doctor import diagnose
from trainlab.probes.base import weight_layers


def _models():
    """``torchvision.models``, or a skip: torchvision missing, or built for another torch
    (its C extension then fails to load with a RuntimeError, which ``importorskip`` would
    not catch)."""
    try:
        import torchvision.models as models
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"torchvision not importable: {type(e).__name__}: {' '.join(str(e).split())}")
    return models


def _small_vit(models):
    return models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                                    hidden_dim=32, mlp_dim=64, num_classes=10)


def _check(d, model):
    assert "symmetric_units" not in d.kinds(), str(d)
    assert {n for n, _ in weight_layers(model)} <= {r["layer"] for r in d.rows}
    assert d.coverage["params_examined"] and "coverage:" in d.to_text()


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small"])
def test_torchvision_convnets(name):
    models = _models()
    torch.manual_seed(0)
    model = getattr(models, name)(weights=None)
    d = diagnose(model, (torch.randn(2, 3, 64, 64), torch.randint(0, 1000, (2,))),
                 time_budget=1.0)
    _check(d, model)
    if name == "resnet18":
        assert not d.findings, str(d)


def test_small_vision_transformer_at_default_init_is_not_flagged():
    models = _models()
    torch.manual_seed(0)
    model = _small_vit(models)
    assert bool((model.heads.head.weight == 0).all())  # torchvision zero-initializes the head
    batch = (torch.randn(2, 3, 32, 32), torch.randint(0, 10, (2,)))
    d = diagnose(model, batch, time_budget=2.0)
    _check(d, model)
    assert not d.findings, str(d)
    # no gradient below a zero head: the gradient rule is not applied, and said so
    why = d.not_applied["vanishing_gradients, exploding_gradients (depth ratio)"]
    assert "heads.head's weights are all zero" in why
    assert d.healthy is None and "some rules could not be applied" in d.to_text()
    assert diagnose(model, batch, steps=1, jacobian=False).healthy is True  # after a step


@pytest.mark.slow
@pytest.mark.parametrize("name", ["densenet121", "vit_b_16"])
def test_torchvision_large_models(name):
    models = _models()
    torch.manual_seed(0)
    kw = {"image_size": 32} if name == "vit_b_16" else {}
    model = getattr(models, name)(weights=None, **kw)
    d = diagnose(model, (torch.randn(2, 3, 32, 32), torch.randint(0, 1000, (2,))),
                 time_budget=1.0)
    _check(d, model)
    assert not d.findings, str(d)
