"""Newton, the natural gradient and L-BFGS against their formulas in float64."""

from __future__ import annotations

import pytest
import torch

from trainlab.optim import OPTIMIZERS, build_optimizer
from trainlab.optim.second_order import NaturalGradient, Newton
from trainlab.train import Trainer

A = torch.tensor([[10.0, 2.0], [2.0, 1.0]], dtype=torch.float64)
B = torch.tensor([1.0, -1.0], dtype=torch.float64)


def quad(w: torch.Tensor) -> torch.Tensor:
    return 0.5 * w @ A @ w - B @ w


def test_newton_step_is_the_damped_formula_and_solves_a_quadratic():
    w = torch.tensor([3.0, -2.0], dtype=torch.float64, requires_grad=True)
    w0 = w.detach().clone()
    opt = Newton([w], lr=1.0, damping=0.1)
    opt.step(lambda: quad(w))
    g = A @ w0 - B
    expected = w0 - torch.linalg.solve(A + 0.1 * torch.eye(2, dtype=torch.float64), g)
    torch.testing.assert_close(w.detach(), expected)
    torch.testing.assert_close(w.grad, g)  # .grad: the gradient at the old point
    w2 = torch.tensor([3.0, -2.0], dtype=torch.float64, requires_grad=True)
    Newton([w2], damping=0.0).step(lambda: quad(w2))
    torch.testing.assert_close(w2.detach(), torch.linalg.solve(A, B))  # one step, exact


def test_newton_hessian_of_a_nonquadratic_function():
    # Rosenbrock: H computed by hand at (x, y)
    w = torch.tensor([-1.0, 1.5], dtype=torch.float64, requires_grad=True)
    x, y = w.detach().tolist()

    def f():
        return (1 - w[0]) ** 2 + 100 * (w[1] - w[0] ** 2) ** 2

    g = torch.tensor([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)],
                     dtype=torch.float64)
    h = torch.tensor([[2 - 400 * (y - 3 * x * x), -400 * x], [-400 * x, 200.0]],
                     dtype=torch.float64)
    Newton([w], damping=0.0).step(f)
    torch.testing.assert_close(w.detach(), torch.tensor([x, y], dtype=torch.float64)
                               - torch.linalg.solve(h, g))


def test_natural_gradient_empirical_fisher_formula():
    torch.manual_seed(0)
    x = torch.randn(6, 3, dtype=torch.float64)
    y = torch.randint(0, 2, (6,))
    w = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    w0 = w.detach().clone()

    def nll():
        return torch.nn.functional.cross_entropy(x @ w, y, reduction="none")

    NaturalGradient([w], lr=0.5, damping=0.01).step(nll)
    # per-example gradients of the softmax NLL: x_i (p_i - onehot_i)^T, independently
    p = torch.softmax(x @ w0, dim=1)
    onehot = torch.nn.functional.one_hot(y, 2).double()
    grads = torch.stack([torch.outer(x[i], p[i] - onehot[i]).reshape(-1) for i in range(6)])
    g = grads.mean(0)
    f = grads.T @ grads / 6
    step = torch.linalg.solve(f + 0.01 * torch.eye(6, dtype=torch.float64), g)
    torch.testing.assert_close(w.detach(), w0 - 0.5 * step.view(3, 2))


def test_gauss_newton_natural_gradient_solves_linear_least_squares_in_one_step():
    torch.manual_seed(1)
    x = torch.randn(20, 3, dtype=torch.float64)
    t = torch.randn(20, dtype=torch.float64)
    w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = NaturalGradient([w], lr=1.0, damping=0.0, fisher="gauss_newton")
    loss0 = opt.step(lambda: x @ w - t)
    torch.testing.assert_close(w.detach(), torch.linalg.lstsq(x, t.unsqueeze(1)).solution[:, 0])
    assert float(loss0) == pytest.approx(0.5 * float((t ** 2).mean()))


def test_bad_arguments_named():
    w = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="damping must be a number >= 0.0. Received: "
                       "damping=-1"):
        Newton([w], damping=-1)
    with pytest.raises(ValueError, match="fisher must be one of .*Received: fisher='true'"):
        NaturalGradient([w], fisher="true")
    with pytest.raises(ValueError, match="at most max_params=10 parameters. Received a model "
                       "with 399"):
        Newton(torch.nn.Linear(20, 19).parameters(), max_params=10)
    with pytest.raises(ValueError, match="1-D tensor of per-example terms"):
        NaturalGradient([w]).step(lambda: (w ** 2).sum())
    with pytest.raises(ValueError, match="lr must be a finite number > 0"):
        build_optimizer("lbfgs", [w], lr=0)


def test_registered_and_listed():
    for name in ("lbfgs", "newton", "natural_gradient", "ngd"):
        assert name in OPTIMIZERS
    assert isinstance(build_optimizer("newton", [torch.zeros(2, requires_grad=True)]), Newton)


@pytest.mark.parametrize("name", ["lbfgs", "newton", "natural_gradient"])
def test_trainer_drives_closure_optimizers(name):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 2, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    model = torch.nn.Linear(2, 2)
    opt = {"natural_gradient": ("natural_gradient", {"lr": 0.5})}.get(name, name)
    hist = Trainer(model, optimizer=opt, log_every=5, progress=False).fit(
        (x, y, x, y), steps=10, batch_size=64)
    losses = [r["train_loss"] for r in hist.metrics]
    assert losses[-1] < 0.5 * losses[0], losses
    assert hist.metrics[-1]["test_acc"] > 0.9


def test_trainer_lbfgs_equals_torch_lbfgs_with_the_same_closure():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 3, generator=g)
    y = torch.randint(0, 2, (32,), generator=g)
    torch.manual_seed(5)
    a = torch.nn.Linear(3, 2)
    b = torch.nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    Trainer(a, optimizer="lbfgs", progress=False, log_every=3).fit((x, y), steps=3,
                                                                   batch_size=32)
    opt = torch.optim.LBFGS(b.parameters(), lr=1.0, max_iter=20, history_size=100,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(b(x), y)
        loss.backward()
        return loss

    for _ in range(3):
        opt.step(closure)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q)


def test_clip_norm_refused_with_closure_optimizers():
    with pytest.raises(ValueError, match="clip_norm and grad_noise act between backward"):
        Trainer(torch.nn.Linear(2, 2), optimizer="lbfgs", clip_norm=1.0)


def test_trainer_natural_gradient_step_uses_per_example_losses():
    """One Trainer step of NGD equals the step from the per-example cross-entropies."""
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(16, 3, generator=g), torch.randint(0, 2, (16,), generator=g)
    torch.manual_seed(1)
    a = torch.nn.Linear(3, 2)
    b = torch.nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    Trainer(a, optimizer="natural_gradient", progress=False, log_every=1).fit(
        (x, y), steps=1, batch_size=16)
    NaturalGradient(b.parameters(), lr=0.1, damping=1e-2).step(
        lambda: torch.nn.functional.cross_entropy(b(x), y, reduction="none"))
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q)
