"""BN folding: folded eval-mode copies compute what the eval-mode original computes."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from trainlab.models.builders import convnet, mlp, preact_resnet
from trainlab.nn.fold import fold_bn, fold_bn_into_, foldable_pairs
from trainlab.nn.norms import BatchNorm


def _train_a_little(model: nn.Module, x: torch.Tensor, steps: int = 5) -> None:
    """Move parameters and running statistics away from their initial values."""
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(steps):
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():  # non-trivial gamma/beta too
        for m in model.modules():
            if isinstance(m, _BatchNorm) and m.weight is not None:
                m.weight.mul_(torch.rand_like(m.weight) + 0.5)
                m.bias.add_(0.3 * torch.randn_like(m.bias))


def _bn_count(model: nn.Module) -> int:
    return sum(isinstance(m, _BatchNorm) for m in model.modules())


CASES = {
    "mlp": (lambda: mlp(10, [32, 32, 16], 4, activation="tanh", norm="bn"), (64, 10)),
    "mlp_no_bias": (lambda: mlp(10, [32, 16], 4, norm="bn", bias=False), (64, 10)),
    "convnet": (lambda: convnet(3, [8, 16], 5, norm="bn"), (16, 3, 12, 12)),
    "convnet1d": (lambda: convnet(1, [8, 8], 3, norm="bn", dims=1), (16, 1, 20)),
}


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
@pytest.mark.parametrize("case", list(CASES))
def test_folded_model_equals_eval_model(case, dtype, tol):
    build, shape = CASES[case]
    torch.manual_seed(0)
    model = build().to(dtype)
    _train_a_little(model, torch.randn(*shape, dtype=dtype))
    n_bn = _bn_count(model)
    folded = fold_bn(model)

    assert _bn_count(folded) == 0 and n_bn > 0
    assert not folded.training
    assert isinstance(folded.block1.norm, nn.Identity)
    assert [n for n, _ in folded.named_modules()] == [n for n, _ in model.named_modules()]
    # the model passed in is untouched
    assert model.training and _bn_count(model) == n_bn

    model.eval()
    x = torch.randn(*shape, dtype=dtype)
    with torch.no_grad():
        want, got = model(x), folded(x)
    assert got.dtype == dtype
    torch.testing.assert_close(got, want, rtol=tol, atol=tol)


def test_foldable_pairs_names():
    m = mlp(4, [8, 8], 2, norm="bn")
    assert foldable_pairs(m) == [("block1.linear", "block1.norm"), ("block2.linear", "block2.norm")]
    c = convnet(3, [4], 2, norm="bn")
    assert foldable_pairs(c) == [("block1.conv", "block1.norm")]


@pytest.mark.parametrize(
    "build, shape",
    [
        (lambda: mlp(6, [8, 8], 2, norm="bn", placement="after"), (32, 6)),
        (lambda: preact_resnet(8, widths=(4, 8, 8)), (4, 3, 8, 8)),
        (lambda: mlp(6, [8], 2, activation="maxout", norm="bn"), (32, 6)),
        (lambda: mlp(6, [8], 2, norm="ln"), (32, 6)),
    ],
)
def test_unfoldable_bns_stay_and_outputs_still_match(build, shape):
    """BN after the nonlinearity, before its conv (pre-activation), or after maxout stays."""
    torch.manual_seed(0)
    model = build()
    _train_a_little(model, torch.randn(*shape))
    assert foldable_pairs(model) == []
    folded = fold_bn(model)
    assert _bn_count(folded) == _bn_count(model)
    model.eval()
    x = torch.randn(*shape)
    torch.testing.assert_close(folded(x), model(x), rtol=0, atol=0)


def test_torch_sequential_conv_without_bias_and_torch_bn():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, bias=False), nn.BatchNorm2d(6), nn.ReLU(),
        nn.Conv2d(6, 4, 3), nn.BatchNorm2d(4, affine=False),
    )  # fmt: skip
    _train_a_little(model, torch.randn(8, 3, 9, 9))
    folded = fold_bn(model, torch.randn(2, 3, 9, 9))
    assert foldable_pairs(model) == [("0", "1"), ("3", "4")]
    assert isinstance(folded[1], nn.Identity) and folded[0].bias is not None
    model.eval()
    x = torch.randn(4, 3, 9, 9)
    torch.testing.assert_close(folded(x), model(x), rtol=1e-5, atol=1e-5)


def test_bn_without_running_stats_is_not_folded():
    model = nn.Sequential(nn.Linear(4, 4), BatchNorm(4, track_running_stats=False))
    assert foldable_pairs(model) == []
    assert isinstance(fold_bn(model, torch.randn(3, 4))[1], BatchNorm)


def test_weight_normalized_layer_folds():
    torch.manual_seed(0)
    lin = nn.utils.parametrizations.weight_norm(nn.Linear(5, 6))
    model = nn.Sequential(lin, BatchNorm(6), nn.Tanh())
    _train_a_little(model, torch.randn(32, 5))
    folded = fold_bn(model, torch.randn(4, 5))
    assert nn.utils.parametrize.is_parametrized(folded[0], "weight")  # set via right_inverse
    model.eval()  # the original still works (its class is shared with the copy's)
    x = torch.randn(8, 5)
    torch.testing.assert_close(folded(x), model(x), rtol=1e-5, atol=1e-5)


def test_fold_formula_on_one_pair_float64():
    d = torch.float64
    lin = nn.Linear(3, 2).to(d)
    bn = BatchNorm(2, eps=1e-3).to(d)
    with torch.no_grad():
        bn.running_mean.copy_(torch.tensor([0.5, -1.0], dtype=d))
        bn.running_var.copy_(torch.tensor([4.0, 0.25], dtype=d))
        bn.weight.copy_(torch.tensor([2.0, -1.0], dtype=d))
        bn.bias.copy_(torch.tensor([0.1, 0.2], dtype=d))
    w, b = lin.weight.detach().clone(), lin.bias.detach().clone()
    fold_bn_into_(lin, bn)
    s = torch.tensor([2.0, -1.0], dtype=d) / torch.sqrt(torch.tensor([4.0, 0.25], dtype=d) + 1e-3)
    torch.testing.assert_close(lin.weight, s[:, None] * w, rtol=1e-14, atol=1e-14)
    want_b = s * (b - torch.tensor([0.5, -1.0], dtype=d)) + torch.tensor([0.1, 0.2], dtype=d)
    torch.testing.assert_close(lin.bias, want_b, rtol=1e-14, atol=1e-14)


def test_fold_errors():
    with pytest.raises(
        TypeError,
        match=r"folds into nn\.Linear, nn\.Conv1d/2d/3d or nn\.ConvTranspose1d/2d/3d\. "
        r"Received: layer of type ReLU",
    ):
        fold_bn_into_(nn.ReLU(), BatchNorm(3))
    with pytest.raises(ValueError, match=r"needs a BatchNorm with running statistics"):
        fold_bn_into_(nn.Linear(3, 3), BatchNorm(3, track_running_stats=False))
    with pytest.raises(ValueError, match=r"the BN has num_features=4 but the layer has 3 outputs"):
        fold_bn_into_(nn.Linear(3, 3), BatchNorm(4))
    with pytest.raises(TypeError, match=r"fold_bn needs an nn\.Module\. Received: str"):
        fold_bn("model")


def test_folded_model_runs_on_batch_size_one():
    """The classic bug the study shows: train-mode BN at batch size 1; folded needs no batch."""
    model = mlp(4, [8], 2, norm="bn")
    model(torch.randn(16, 4))
    folded = fold_bn(model)
    assert folded(torch.randn(1, 4)).shape == (1, 2)


def test_parametrization_without_right_inverse_is_not_folded():
    class Doubled(nn.Module):
        def forward(self, w):
            return 2 * w

    lin = nn.Linear(3, 3)
    nn.utils.parametrize.register_parametrization(lin, "weight", Doubled())
    model = nn.Sequential(lin, BatchNorm(3))
    assert foldable_pairs(model) == []
    with pytest.raises(ValueError, match=r"a parametrization of its weight has no right_inverse"):
        fold_bn_into_(lin, BatchNorm(3))
