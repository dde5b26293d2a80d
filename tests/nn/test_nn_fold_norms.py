"""Folding batch renorm, mean-only BN, WN, CWN and NormProp; grouped and transposed convs;
every fold checked on a probe batch and refused when it does not hold."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainlab.nn import (
    BatchNorm,
    BatchRenorm,
    FoldError,
    MeanOnlyBatchNorm,
    check_fold,
    convnet,
    fold_bn,
    fold_bn_into_,
    fold_norms,
    is_weight_normalized,
    mlp,
    weight_norm_,
)

D64 = torch.float64


def _train_a_little(model, x, steps=3):
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
    with torch.no_grad():  # move the running statistics more
        for _ in range(3):
            model(x * 1.5 + 0.3)


def _no_norm_left(model):
    kinds = (BatchNorm, nn.modules.batchnorm._BatchNorm, MeanOnlyBatchNorm)
    return not any(isinstance(m, kinds) for m in model.modules()) and not any(
        is_weight_normalized(m) for m in model.modules())


CASES = {
    "mlp_brn": (lambda: mlp(6, [16, 8], 3, norm=("brn", {"warmup_steps": 0, "r_max_steps": 0,
                                                           "d_max_steps": 0})), (32, 6)),
    "convnet_brn": (lambda: convnet(3, [4, 6], 2, norm="brn"), (8, 3, 8, 8)),
    "mlp_wn": (lambda: mlp(6, [16, 8], 3, norm="wn"), (32, 6)),
    "mlp_cwn": (lambda: mlp(6, [16, 8], 3, norm="cwn"), (32, 6)),
    "mlp_wn_mobn": (lambda: mlp(6, [16, 8], 3, norm="wn_mobn"), (32, 6)),
    "convnet_cwn": (lambda: convnet(3, [4, 6], 2, norm="cwn"), (8, 3, 8, 8)),
    "convnet1d_wn_mobn": (lambda: convnet(2, [4], 2, norm="wn_mobn", dims=1), (8, 2, 12)),
    "mlp_normprop": (lambda: mlp(6, [16, 8], 3, norm="normprop"), (32, 6)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_fold_norms_bakes_everything_and_equals_the_eval_model(case):
    build, shape = CASES[case]
    torch.manual_seed(0)
    model = build().to(D64)
    _train_a_little(model, torch.randn(*shape, dtype=D64))
    folded = fold_norms(model)  # checked on a probe made from model.spec
    if "normprop" not in case:
        assert _no_norm_left(folded)
    else:  # the fixed standardization stays (no parameters), the layers are plain
        assert not any(is_weight_normalized(m) for m in folded.modules())
    assert model.training  # the original is untouched, modes restored after the check
    x = torch.randn(*shape, dtype=D64)
    model.eval()
    torch.testing.assert_close(folded(x), model(x), rtol=1e-10, atol=1e-10)
    assert [n for n, _ in folded.named_modules()] == [n for n, _ in model.named_modules()]
    layers = [m for m in folded.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]
    assert layers and all(type(m) in (nn.Linear, nn.Conv1d, nn.Conv2d) for m in layers)


def test_fold_bn_folds_brn_and_mobn_like_bn():
    torch.manual_seed(0)
    for norm in ("brn", "mobn"):
        model = mlp(5, [8], 2, norm=norm)
        _train_a_little(model, torch.randn(16, 5))
        folded = fold_bn(model, torch.randn(4, 5))
        assert isinstance(folded.block1.norm, nn.Identity)


def _transposed_formula(layer, bn):
    """The fold written out per output channel o = grp * C_out/G + j of a transposed conv."""
    w = layer.weight.detach().clone()
    s = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    c_in, c_out_g = w.shape[0], w.shape[1]
    groups = layer.groups
    in_g = c_in // groups
    for grp in range(groups):
        for j in range(c_out_g):
            w[grp * in_g:(grp + 1) * in_g, j] *= s[grp * c_out_g + j]
    b = s * (layer.bias.detach() - bn.running_mean) + bn.bias.detach()
    return w, b


@pytest.mark.parametrize("wn", [None, "wn", "cwn"])
def test_grouped_transposed_conv_folds_per_output_channel(wn):
    torch.manual_seed(0)
    conv = nn.ConvTranspose2d(4, 6, 3, stride=2, groups=2).to(D64)
    bn = BatchNorm(6).to(D64)
    with torch.no_grad():
        bn.running_mean.copy_(torch.linspace(-1, 1, 6, dtype=D64))
        bn.running_var.copy_(torch.linspace(0.5, 3, 6, dtype=D64))
        bn.weight.copy_(torch.linspace(0.2, 2, 6, dtype=D64))
        bn.bias.copy_(torch.linspace(1, -1, 6, dtype=D64))
    if wn:
        weight_norm_(conv, centered=wn == "cwn")
    want_w, want_b = _transposed_formula(conv, bn)
    model = nn.Sequential(conv, bn).eval()
    x = torch.randn(2, 4, 5, 5, dtype=D64)
    folded = fold_norms(model, x)
    torch.testing.assert_close(folded[0].weight, want_w, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(folded[0].bias, want_b, rtol=1e-12, atol=1e-12)
    assert type(folded[0]) is nn.ConvTranspose2d and isinstance(folded[1], nn.Identity)


def test_grouped_conv_with_brn_folds():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(4, 6, 3, groups=2), BatchRenorm(6), nn.ReLU())
    _train_a_little(model, torch.randn(8, 4, 6, 6))
    folded = fold_bn(model, torch.randn(3, 4, 6, 6))
    assert isinstance(folded[1], nn.Identity)


def test_a_fold_that_does_not_hold_raises():
    class Doubling(nn.Module):  # right_inverse that is not the inverse: the fold is wrong
        def forward(self, w):
            return 2 * w

        def right_inverse(self, w):
            return w

    lin = nn.Linear(3, 4)
    nn.utils.parametrize.register_parametrization(lin, "weight", Doubling())
    model = nn.Sequential(lin, BatchNorm(4))
    model(torch.randn(8, 3))
    with pytest.raises(FoldError, match=r"fold_bn: the folded model does not compute what the "
                                        r"eval-mode original computes.*max \|difference\|"):
        fold_bn(model, torch.randn(5, 3))
    with pytest.raises(FoldError, match=r"fold_norms"):
        fold_norms(model, torch.randn(5, 3))


def test_unchecked_fold_warns_and_check_fold_reports():
    model = nn.Sequential(nn.Linear(3, 4), BatchNorm(4))
    model(torch.randn(8, 3))
    with pytest.warns(UserWarning, match=r"was not checked.*Pass probe="):
        folded = fold_bn(model)
    assert check_fold(model, folded, torch.randn(4, 3)) < 1e-5
    with pytest.raises(FoldError):
        check_fold(model, nn.Sequential(nn.Linear(3, 4)), torch.randn(4, 3))


def test_fold_into_a_layer_type_it_cannot_set_is_named():
    with pytest.raises(TypeError, match=r"Received: layer of type Embedding"):
        fold_bn_into_(nn.Embedding(3, 3), BatchNorm(3))
    with pytest.raises(TypeError, match=r"fold_norms needs an nn\.Module\. Received: int"):
        fold_norms(3)
