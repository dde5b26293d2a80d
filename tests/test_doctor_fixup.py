"""The doctor's data-dependent fixes (LSUV, Kraehenbuehl) and its Fixup recommendation for
residual networks without normalization."""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn

import trainlab
from trainlab.doctor import FIXES, diagnose
from zoo import ZOO


def _exploding_resnet(depth=32):
    torch.manual_seed(0)
    m = trainlab.preact_resnet(depth, widths=(8, 16, 32), norm="none", init="he_normal")
    return m, (torch.randn(16, 3, 16, 16), torch.randint(0, 10, (16,)))


def test_fixup_is_recommended_first_and_cures_a_residual_net_without_norm():
    m, batch = _exploding_resnet()
    d = diagnose(m, batch, jacobian=False, try_fixes=["fixup", "init"])
    blowups = [f for f in d.findings if f.kind.startswith(("exploding", "vanishing"))]
    assert blowups, d.kinds()
    for f in blowups:
        assert f.fixes[0] == "fixup" and "residual network without normalization" in f.evidence
    fx = next(r for r in d.fix_results if r.fix == "fixup")
    assert fx.applied and "Fixup over 15 residual branches" in fx.note
    assert not any(k.startswith(("exploding", "vanishing")) for k in fx.after.kinds())
    assert "fixup" in FIXES


def test_fixup_on_a_foreign_resnet_without_norm_and_refused_with_norm():
    model, x, y = ZOO["resnet"]()
    d = diagnose(model, (x, y), jacobian=False, try_fixes=["fixup"])
    assert not any("fixup" in f.fixes for f in d.findings)  # BN: not Fixup's case
    r = d.fix_results[0]
    assert not r.applied and "Fixup replaces normalization" in r.note
    for mod in list(model.modules()):
        for child, sub in list(mod.named_children()):
            if isinstance(sub, nn.BatchNorm2d):
                setattr(mod, child, nn.Identity())
    d = diagnose(model, (x, y), jacobian=False, try_fixes=["fixup"])
    r = d.fix_results[0]
    assert r.applied and "Fixup over 4 residual branches" in r.note
    assert abs(r.after.loss - math.log(10)) < 1e-5  # head at 0: uniform output
    plain = trainlab.mlp([8, 16, 4])
    d = diagnose(plain, (torch.randn(8, 8), torch.randint(0, 4, (8,))), jacobian=False,
                 try_fixes=["fixup"])
    assert "found no residual block" in d.fix_results[0].note


def test_lsuv_and_data_dependent_fixes_cure_vanishing_tanh():
    torch.manual_seed(0)
    m = trainlab.mlp([32, 64, 64, 64, 64, 10], activation="tanh",
                     init=("normal", {"std": 0.01}))
    batch = (torch.randn(128, 32), torch.randint(0, 10, (128,)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing left unexamined on this model
        d = diagnose(m, batch, jacobian=False, try_fixes=True)
    assert "vanishing_activations" in d.kinds()
    f = next(f for f in d.findings if f.kind == "vanishing_activations")
    assert "lsuv" in f.fixes and "data_dependent" in f.fixes and "fixup" not in f.fixes
    tried = {r.fix: r for r in d.fix_results}
    for fix in ("lsuv", "data_dependent"):
        assert tried[fix].applied, tried[fix].note
        assert "vanishing_activations" not in tried[fix].after.kinds(), fix
    assert tried["lsuv"].note.startswith("re-initialized with 'lsuv' on the batch")
