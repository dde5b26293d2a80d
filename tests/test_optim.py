"""Optimizers: each lecture-003 update rule re-implemented here in float64 (NumPy, not
imported from trainlab) and compared step by step with the torch-based trainlab optimizer;
then the builder API, its error messages, and a contract test over every registered name.

The problem: mini-batch linear regression with a bias, 0.5·mean((X_k w + b - y_k)²), columns
of X scaled over two decades so that per-weight adaptive rules matter, and a fixed sequence
of mini-batches, so the gradient depends on both the step and the current weights (as it must
for Nesterov's look-ahead). Every rule runs 30 steps; the iterates must agree to 1e-10.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from trainlab.optim import OPTIMIZERS, build_optimizer

STEPS = 30
ATOL = 1e-10


class Problem:
    """A fixed regression problem; the gradient sequence depends on the weights."""

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.X = rng.normal(size=(48, 5)) * np.array([1.0, 3.0, 0.3, 10.0, 0.1])
        self.y = self.X @ rng.normal(size=5) + 0.5 + 0.1 * rng.normal(size=48)
        self.batches = [rng.choice(48, size=12, replace=False) for _ in range(STEPS)]
        self.theta0 = rng.normal(size=6)  # 5 weights and the bias

    def grad(self, theta: np.ndarray, k: int) -> np.ndarray:
        """∂L_k/∂θ in float64, by hand."""
        xb, yb = self.X[self.batches[k]], self.y[self.batches[k]]
        r = xb @ theta[:5] + theta[5] - yb
        return np.concatenate([xb.T @ r / len(r), [r.mean()]])

    def run_torch(self, spec, lr=None, lrs=None, **kw) -> list[np.ndarray]:
        """Iterates θ^(1..STEPS) of the trainlab optimizer (two float64 tensors: w and b)."""
        w = torch.tensor(self.theta0[:5], dtype=torch.float64, requires_grad=True)
        b = torch.tensor(self.theta0[5:], dtype=torch.float64, requires_grad=True)
        opt = build_optimizer(spec, [w, b], lr=lr, **kw)
        X, y = torch.from_numpy(self.X), torch.from_numpy(self.y)
        out = []
        for k in range(STEPS):
            if lrs is not None:
                for g in opt.param_groups:
                    g["lr"] = lrs[k]
            opt.zero_grad()
            idx = torch.from_numpy(self.batches[k])
            loss = 0.5 * ((X[idx] @ w + b - y[idx]) ** 2).mean()
            loss.backward()
            opt.step()
            out.append(torch.cat([w, b]).detach().numpy().copy())
        return out


@pytest.fixture(scope="module")
def prob() -> Problem:
    return Problem()


def assert_same_path(ours: list[np.ndarray], ref: list[np.ndarray], atol: float = ATOL):
    assert len(ours) == len(ref) == STEPS
    for k, (a, r) in enumerate(zip(ours, ref)):
        err = np.max(np.abs(a - r))
        assert err <= atol, f"step {k + 1}: max |Δθ| = {err:.3e} > {atol:.0e}"
    # the path actually moved, so the comparison is not vacuous
    assert np.max(np.abs(ref[-1] - ref[0])) > 1e-3


# ---- the lecture's rules, written out ------------------------------------------------------
def lecture_sgd(p: Problem, mu: float) -> list[np.ndarray]:
    w, out = p.theta0.copy(), []
    for k in range(STEPS):
        w = w - mu * p.grad(w, k)
        out.append(w)
    return out


def lecture_momentum(p: Problem, mus, gamma: float) -> list[np.ndarray]:
    """v = γv + μ g(w); w = w - v. ``mus`` is the learning rate of each step."""
    w, v, out = p.theta0.copy(), np.zeros(6), []
    for k in range(STEPS):
        v = gamma * v + mus[k] * p.grad(w, k)
        w = w - v
        out.append(w)
    return out


def lecture_nesterov(p: Problem, mu: float, gamma: float):
    """v = γv + μ g(w - γv); w = w - v (Sutskever et al. 2013). Returns w and w - γv."""
    w, v, ws, lookahead = p.theta0.copy(), np.zeros(6), [], []
    for k in range(STEPS):
        v = gamma * v + mu * p.grad(w - gamma * v, k)
        w = w - v
        ws.append(w)
        lookahead.append(w - gamma * v)
    return ws, lookahead


def lecture_adagrad(p: Problem, mu: float, eps: float) -> list[np.ndarray]:
    w, G, out = p.theta0.copy(), np.zeros(6), []
    for k in range(STEPS):
        g = p.grad(w, k)
        G = G + g**2  # sum of squared gradients up to and including step k
        w = w - mu / np.sqrt(G + eps) * g
        out.append(w)
    return out


def lecture_rmsprop(p: Problem, mu, gamma, eps, eps_inside=True) -> list[np.ndarray]:
    w, E, out = p.theta0.copy(), np.zeros(6), []
    for k in range(STEPS):
        g = p.grad(w, k)
        E = gamma * E + (1 - gamma) * g**2
        denom = np.sqrt(E + eps) if eps_inside else np.sqrt(E) + eps
        w = w - mu / denom * g
        out.append(w)
    return out


def lecture_adadelta(p: Problem, gamma, eps, lr=1.0) -> list[np.ndarray]:
    """Zeiler's rule; ``lr`` scales the applied step only (torch's form of 'lr is added')."""
    w, Eg, Edw, out = p.theta0.copy(), np.zeros(6), np.zeros(6), []
    for k in range(STEPS):
        g = p.grad(w, k)
        Eg = gamma * Eg + (1 - gamma) * g**2
        dw = -np.sqrt(Edw + eps) / np.sqrt(Eg + eps) * g  # RMS[Δw]^(k-1) / RMS[g]^(k)
        Edw = gamma * Edw + (1 - gamma) * dw**2
        w = w + lr * dw
        out.append(w)
    return out


def lecture_adam(p, mu, g1, g2, eps, eps_inside=True, decoupled_wd=0.0):
    w, m, b, out = p.theta0.copy(), np.zeros(6), np.zeros(6), []
    for k in range(1, STEPS + 1):
        g = p.grad(w, k - 1)
        w = w * (1 - mu * decoupled_wd)  # AdamW: shrink first, with g taken at the old w
        m = g1 * m + (1 - g1) * g
        b = g2 * b + (1 - g2) * g**2
        m_hat, b_hat = m / (1 - g1**k), b / (1 - g2**k)
        denom = np.sqrt(b_hat + eps) if eps_inside else np.sqrt(b_hat) + eps
        w = w - mu / denom * m_hat
        out.append(w)
    return out


# ---- step-by-step equality ------------------------------------------------------------------
def test_sgd_follows_lecture(prob):
    assert_same_path(prob.run_torch("sgd", lr=0.01), lecture_sgd(prob, 0.01))


def test_momentum_follows_lecture_with_constant_lr(prob):
    """v = μ b: torch's un-scaled buffer times lr is the lecture's velocity."""
    mus = [0.003] * STEPS
    assert_same_path(prob.run_torch("momentum", lr=0.003), lecture_momentum(prob, mus, 0.9))


def test_momentum_under_changing_lr_is_torch_form_not_lecture(prob):
    """Documented difference: torch rescales the whole buffer by the current lr."""
    mus = [0.003 if k < 10 else 0.0003 for k in range(STEPS)]
    ours = prob.run_torch("momentum", lrs=mus)
    # torch's form, written out: b = γb + g, w -= μ_k b
    w, bbuf, torch_form = prob.theta0.copy(), np.zeros(6), []
    for k in range(STEPS):
        bbuf = 0.9 * bbuf + prob.grad(w, k)
        w = w - mus[k] * bbuf
        torch_form.append(w)
    assert_same_path(ours, torch_form)
    lecture = lecture_momentum(prob, mus, 0.9)
    assert np.max(np.abs(ours[12] - lecture[12])) > 1e-4  # the two differ after the drop


def test_nesterov_is_lecture_lookahead_point(prob):
    """torch's parameter is the lecture's look-ahead point w - γv (Sutskever et al.)."""
    ws, lookahead = lecture_nesterov(prob, 0.003, 0.9)
    ours = prob.run_torch("nesterov", lr=0.003)
    assert_same_path(ours, lookahead)
    # ... and not the lecture's w itself (the two differ by γv)
    assert np.max(np.abs(ours[-1] - ws[-1])) > 1e-4


@pytest.mark.parametrize("eps", [1e-10, 1e-2])
def test_adagrad_follows_lecture_eps_inside_root(prob, eps):
    """ε inside the root; with ε = 1e-2 torch's own ε placement would differ visibly."""
    assert_same_path(prob.run_torch("adagrad", lr=0.05, eps=eps), lecture_adagrad(prob, 0.05, eps))


def test_adagrad_default_eps_is_lecture_not_torch_placement(prob):
    ours = prob.run_torch("adagrad", lr=0.05, eps=1e-2)
    # torch's native rule: sqrt(G) + eps
    w, G, native = prob.theta0.copy(), np.zeros(6), []
    for k in range(STEPS):
        g = prob.grad(w, k)
        G = G + g**2
        w = w - 0.05 * g / (np.sqrt(G) + 1e-2)
        native.append(w)
    assert np.max(np.abs(ours[-1] - native[-1])) > 1e-6


def test_rmsprop_follows_lecture(prob):
    # as ε -> 0 the ε placement does not matter: the lecture's rule, exactly
    ours = prob.run_torch("rmsprop", lr=0.01, eps=1e-30)
    assert_same_path(ours, lecture_rmsprop(prob, 0.01, 0.9, 1e-30, eps_inside=True))
    # at the default ε: torch's placement (outside the root), exactly; γ = 0.9 by default
    ours = prob.run_torch("rmsprop", lr=0.01)
    assert_same_path(ours, lecture_rmsprop(prob, 0.01, 0.9, 1e-8, eps_inside=False))


@pytest.mark.parametrize("lr", [1.0, 0.5])
def test_adadelta_follows_lecture(prob, lr):
    """lr = 1 is Zeiler's rule; other lr scale the applied step only."""
    ours = prob.run_torch("adadelta", lr=lr)
    assert_same_path(ours, lecture_adadelta(prob, 0.9, 1e-6, lr=lr), atol=ATOL)


def test_adam_follows_lecture(prob):
    ours = prob.run_torch("adam", lr=0.01, eps=1e-30)
    assert_same_path(ours, lecture_adam(prob, 0.01, 0.9, 0.999, 1e-30, eps_inside=True))
    ours = prob.run_torch("adam", lr=0.01)  # defaults: betas (0.9, 0.999), eps 1e-8 outside
    assert_same_path(ours, lecture_adam(prob, 0.01, 0.9, 0.999, 1e-8, eps_inside=False))


def test_adam_bias_correction_matters(prob):
    """Without m̂, b̂ the first steps differ: the test above would catch a missing correction."""
    w, m, b = prob.theta0.copy(), np.zeros(6), np.zeros(6)
    g = prob.grad(w, 0)
    m, b = 0.1 * g, 0.001 * g**2
    uncorrected = w - 0.01 * m / (np.sqrt(b) + 1e-8)
    ours = prob.run_torch("adam", lr=0.01)
    assert np.max(np.abs(ours[0] - uncorrected)) > 1e-3


def test_adamw_follows_decoupled_rule(prob):
    ours = prob.run_torch("adamw", lr=0.01, weight_decay=0.1)
    ref = lecture_adam(prob, 0.01, 0.9, 0.999, 1e-8, eps_inside=False, decoupled_wd=0.1)
    assert_same_path(ours, ref)
    # default weight decay 1e-2
    ours = prob.run_torch("adamw", lr=0.01)
    ref = lecture_adam(prob, 0.01, 0.9, 0.999, 1e-8, eps_inside=False, decoupled_wd=1e-2)
    assert_same_path(ours, ref)


def test_lecture_defaults():
    """The defaults the docstrings promise."""
    p = [torch.zeros(2, requires_grad=True)]
    g = {n: build_optimizer(n, p).param_groups[0] for n in OPTIMIZERS.names()}
    assert g["momentum"]["momentum"] == 0.9 and not g["momentum"]["nesterov"]
    assert g["nesterov"]["momentum"] == 0.9 and g["nesterov"]["nesterov"]
    assert g["sgd"]["momentum"] == 0
    assert g["adagrad"]["lr"] == 0.01  # the lecture's default
    assert g["adagrad"]["eps"] == 0.0 and g["adagrad"]["initial_accumulator_value"] == 1e-10
    assert g["rmsprop"]["alpha"] == 0.9  # the lecture's γ (torch: 0.99)
    assert g["adadelta"]["lr"] == 1.0 and g["adadelta"]["rho"] == 0.9
    assert g["adam"]["betas"] == (0.9, 0.999) and g["adam"]["eps"] == 1e-8
    for e in OPTIMIZERS:
        assert g[e.name]["lr"] == e.meta["default_lr"] == e.defaults["lr"]


# ---- builder API ----------------------------------------------------------------------------
def test_spec_forms_and_precedence():
    m = torch.nn.Linear(3, 2)
    assert isinstance(build_optimizer("Adam", m), torch.optim.Adam)
    opt = build_optimizer(("momentum", {"lr": 0.05, "momentum": 0.8}), m.parameters())
    assert opt.param_groups[0]["lr"] == 0.05 and opt.param_groups[0]["momentum"] == 0.8
    opt = build_optimizer({"name": "rmsprop", "lr": 0.05}, m, lr=0.2, alpha=0.5)
    assert opt.param_groups[0]["lr"] == 0.2 and opt.param_groups[0]["alpha"] == 0.5
    opt = build_optimizer(torch.optim.SGD, m, lr=0.3, momentum=0.5)
    assert type(opt) is torch.optim.SGD and opt.param_groups[0]["lr"] == 0.3
    groups = [{"params": [m.weight], "lr": 0.5}, {"params": [m.bias]}]
    opt = build_optimizer("sgd", groups, lr=0.1)
    assert [g["lr"] for g in opt.param_groups] == [0.5, 0.1]


def test_state_dict_round_trip_by_name():
    torch.manual_seed(0)
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    for name in OPTIMIZERS.names():
        m1 = torch.nn.Linear(4, 1)
        opt1 = build_optimizer(name, m1)

        def step(m, opt):
            take_step(opt, lambda: ((m(x) - y) ** 2).reshape(-1))

        for _ in range(3):
            step(m1, opt1)
        m2 = copy.deepcopy(m1)
        opt2 = build_optimizer(name, m2, lr=123.0)  # lr comes back from the state dict
        opt2.load_state_dict(copy.deepcopy(opt1.state_dict()))
        assert opt2.param_groups[0]["lr"] == opt1.param_groups[0]["lr"]
        for _ in range(3):
            step(m1, opt1)
            step(m2, opt2)
        for a, b in zip(m1.parameters(), m2.parameters()):
            assert torch.equal(a, b), name


# ---- errors ---------------------------------------------------------------------------------
P = [torch.zeros(2, requires_grad=True)]


@pytest.mark.parametrize(
    "spec, kw, match",
    [
        ("adamm", {}, r"Unknown optim 'adamm'\. Did you mean 'adam'.*Available: adadelta"),
        ("sgd", {"lr": 0.0}, r"lr must be a finite number > 0\. Received: lr=0\.0"),
        ("adam", {"lr": -1e-3}, r"lr must be .* Received: lr=-0\.001"),
        ("adam", {"lr": "fast"}, r"Received: lr='fast'"),
        (torch.optim.SGD, {"lr": -1.0}, r"Received: lr=-1\.0"),
        ("momentum", {"momentum": -0.5}, r"momentum must be a number >= 0 .* momentum=-0\.5"),
        ("sgd", {"momentum": -0.1}, r"Received: momentum=-0\.1"),
        ("adam", {"betas": (0.9, 1.0)}, r"betas must be a pair of numbers in \[0, 1\).*1\.0\)"),
        ("adamw", {"betas": (-0.1, 0.9)}, r"Received: betas=\(-0\.1, 0\.9\)"),
        ("adam", {"betas": 0.9}, r"Received: betas=0\.9"),
        ("adam", {"eps": 0.0}, r"eps must be a number > 0 .* Received: eps=0\.0"),
        ("rmsprop", {"eps": -1e-8}, r"Received: eps=-1e-08"),
        ("adagrad", {"eps": 0}, r"Received: eps=0"),
        ("adadelta", {"eps": 0}, r"Received: eps=0"),
        ("rmsprop", {"alpha": 1.0}, r"alpha must be a number in \[0, 1\).*alpha=1\.0"),
        ("adadelta", {"rho": -0.1}, r"rho must be .* rho=-0\.1"),
        ("adamw", {"weight_decay": -1}, r"weight_decay must be a number >= 0\. .*=-1"),
        ("nesterov", {"momentum": 0.0}, r"nesterov needs momentum > 0\. Received: momentum=0\.0"),
        ("sgd", {"nesterov": True}, r"nesterov=True needs momentum > 0 .* momentum=0\.0"),
        ({"lr": 0.1}, {}, r"needs a 'name' key"),
    ],
)
def test_errors(spec, kw, match):
    with pytest.raises(ValueError, match=match):
        build_optimizer(spec, P, **kw)


def test_type_errors():
    with pytest.raises(TypeError, match=r"Cannot build an optimizer from 3"):
        build_optimizer(3, P)
    with pytest.raises(TypeError, match=r"needs a mapping of kwargs"):
        build_optimizer(("adam", 0.1), P)


def test_momentum_at_least_one_warns():
    with pytest.warns(UserWarning, match=r"momentum=1\.0 >= 1"):
        build_optimizer("momentum", P, momentum=1.0)


# ---- contract over every registered optimizer -----------------------------------------------
def take_step(opt, per_example) -> float:
    """One step of any registered optimizer on the mean of ``per_example()``; the loss at the
    point the step started from. L-BFGS, Newton and the natural gradient take a closure of
    their ``closure_kind`` (see trainlab.optim.second_order)."""
    kind = getattr(opt, "closure_kind", None)
    if kind == "loss":
        return float(opt.step(lambda: per_example().mean()))
    if kind == "per_example":
        return float(opt.step(per_example))
    first = []

    def backward():
        opt.zero_grad()
        loss = per_example().mean()
        loss.backward()
        first.append(loss.item())
        return loss

    if kind == "backward":
        opt.step(backward)
    else:
        backward()
        opt.step()
    return first[0]


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_contract(name):
    entry = OPTIMIZERS.get(name)
    assert entry.description and entry.reference
    assert entry.meta["default_lr"] > 0
    for dtype in (torch.float32, torch.float64):
        torch.manual_seed(0)
        m = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
        m = m.to(dtype)
        x = torch.randn(64, 4, dtype=dtype)
        y = x.sum(1, keepdim=True).sin()
        opt = build_optimizer(name, m)
        assert isinstance(opt, entry.meta["torch_class"])
        def per_example(m=m, x=x, y=y):
            return ((m(x) - y) ** 2).reshape(-1)

        losses = [take_step(opt, per_example) for _ in range(40)]
        assert all(math.isfinite(v) for v in losses)
        assert losses[-1] < losses[0], (name, dtype, losses[0], losses[-1])
        assert all(p.dtype == dtype for p in m.parameters())
        # the docstring states the lecture's rule and torch's
        assert "Lecture" in entry.factory.__doc__ or "lecture" in entry.factory.__doc__


def test_unknown_optimizer_keyword_lists_close_matches():
    m = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match=r"optimizer 'adam' takes no argument 'betaz'\. "
                                         r"Did you mean 'betas'\?"):
        build_optimizer("adam", m, betaz=(0.9, 0.99))
    build_optimizer("adam", m, amsgrad=True)  # torch's own keywords still pass through


@pytest.mark.parametrize("lr", [0, 0.0, -1e-3, float("nan"), float("inf")])
def test_one_lr_rule_everywhere(lr):
    """build_optimizer, the Trainer and the config refuse the same values, in the same words
    (before: lr=0 and lr=nan gave two different rules in the Trainer; the config took inf)."""
    from trainlab.runs.config import load_config
    from trainlab.train import Trainer

    m = torch.nn.Linear(2, 2)
    for make in (lambda: build_optimizer("sgd", m, lr=lr),
                 lambda: Trainer(m, optimizer="sgd", lr=lr)):
        with pytest.raises(ValueError, match=r"lr must be a finite number > 0\. Received: lr="):
            make()
    with pytest.raises(ValueError, match=r"optim\.lr must be a finite number > 0"):
        load_config(overrides=[f"optim.lr={lr}"])
