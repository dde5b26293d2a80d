"""Normalization propagation (Arpit et al. 2016): closed-form constants by quadrature, the
layer formula in float64, unit statistics at init with no data pass, batch size 1."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from trainlab.nn import (
    RELU_MEAN,
    RELU_STD,
    RELU_VAR,
    NormPropStandardize,
    convnet,
    is_weight_normalized,
    mlp,
    normprop_,
    preact_resnet,
)

D64 = torch.float64


def test_relu_gaussian_moments_by_quadrature():
    z = torch.linspace(0.0, 12.0, 200001, dtype=D64)
    phi = torch.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    mean = torch.trapezoid(z * phi, z).item()          # E[ReLU(z)]
    second = torch.trapezoid(z * z * phi, z).item()    # E[ReLU(z)^2] (= 1/2)
    assert RELU_MEAN == pytest.approx(mean, rel=1e-9)
    assert RELU_VAR == pytest.approx(second - mean**2, rel=1e-9)
    assert RELU_STD == pytest.approx(math.sqrt(second - mean**2), rel=1e-9)


def test_block_is_the_papers_formula():
    """o = (ReLU(gamma W x / ||W_i|| + beta) - 1/sqrt(2 pi)) / sqrt(1/2 - 1/(2 pi))."""
    torch.manual_seed(0)
    m = mlp(5, [7], 3, norm="normprop").to(D64)
    lin = m.block1.linear
    with torch.no_grad():
        lin.weight_g.copy_(torch.linspace(0.5, 2.0, 7, dtype=D64))
        lin.bias.copy_(torch.linspace(-0.3, 0.3, 7, dtype=D64))
    v = lin.weight_v.detach()
    x = torch.randn(4, 5, dtype=D64)
    u = x @ (v / torch.sqrt((v * v).sum(1, keepdim=True))).T
    want = (torch.relu(lin.weight_g.detach() * u + lin.bias.detach()) - 1 / math.sqrt(2 * math.pi))
    want = want / math.sqrt(0.5 - 1 / (2 * math.pi))
    torch.testing.assert_close(m.block1(x), want, rtol=1e-12, atol=1e-12)
    assert [n for n, _ in m.block1.named_children()] == ["linear", "act", "norm"]
    assert isinstance(m.block1.norm, NormPropStandardize)


def test_normprop_init_is_gamma_1_beta_0_and_data_independent():
    lin = normprop_(nn.Linear(4, 6))
    assert torch.equal(lin.weight_g.detach(), torch.ones(6))
    assert torch.equal(lin.bias.detach(), torch.zeros(6))
    torch.testing.assert_close(lin.weight.norm(dim=1), torch.ones(6))
    assert is_weight_normalized(lin) and lin.wn_mode == "normprop"


def test_activations_stay_near_zero_mean_unit_variance_at_init():
    """No data pass: standardized Gaussian input through 6 NormProp blocks of width 256.
    Each unit's pre-activation has exactly unit variance under identity input covariance;
    the small correlations of random rows let the statistics drift slowly, so the bounds are
    |mean| < 0.15 and std within 15% of 1 per layer (4096 samples: sampling error ~0.02)."""
    torch.manual_seed(0)
    m = mlp(256, [256] * 6, 10, norm="normprop")
    x = torch.randn(4096, 256, generator=torch.Generator().manual_seed(1))
    h = x
    for i in range(1, 7):
        h = m.get_submodule(f"block{i}")(h)
        assert abs(h.mean().item()) < 0.15, (i, h.mean().item())
        assert 0.85 < h.std().item() < 1.15, (i, h.std().item())
    # an unnormalized twin with torch's default init loses the scale layer after layer
    torch.manual_seed(0)
    plain = mlp(256, [256] * 6, 10)
    assert plain.block6(plain.block5(plain.block4(plain.block3(plain.block2(plain.block1(x))))))\
        .std() < 0.1


def test_batch_size_one_and_train_equals_eval():
    torch.manual_seed(0)
    m = convnet(3, [4, 6], 2, norm="normprop")
    x = torch.randn(5, 3, 8, 8)
    batch = m(x)
    single = torch.cat([m(x[i:i + 1]) for i in range(5)])
    torch.testing.assert_close(single, batch, rtol=1e-5, atol=1e-6)
    m.eval()
    torch.testing.assert_close(m(x), batch, rtol=0, atol=0)
    # one training step at batch size 1 (where BN raises) moves gamma and beta
    m.train()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    loss = nn.functional.cross_entropy(m(x[:1]), torch.tensor([1]))
    loss.backward()
    assert m.block1.conv.weight_g.grad.abs().sum() > 0 and m.block1.conv.bias.grad is not None
    opt.step()
    with pytest.raises(ValueError, match=r"one value per channel"):
        mlp(3, [4], 2, norm="bn")(torch.randn(1, 3))


def test_builder_refusals():
    with pytest.raises(ValueError, match=r"norm 'normprop' uses closed-form statistics of relu "
                                         r"only\. Received: activation='tanh'"):
        mlp(4, [8], 2, activation="tanh", norm="normprop")
    with pytest.raises(ValueError, match=r"norm 'normprop' is defined for mlp, convnet only.*"
                                         r"in preact_resnet"):
        preact_resnet(8, norm="normprop")
    # the standardization follows the ReLU whatever placement is asked for
    m = mlp(4, [8], 2, norm="normprop", placement="before")
    assert [n for n, _ in m.block1.named_children()] == ["linear", "act", "norm"]
    with pytest.raises(ValueError, match=r"num_features=8 channels"):
        NormPropStandardize(8)(torch.randn(2, 3))
    with pytest.raises(ValueError, match=r"normprop takes no options\. Received: eps=0\.1"):
        mlp(4, [8], 2, norm=("normprop", {"eps": 0.1}))
