"""The package as a user meets it: the issue's one-liners, and `trainlab list`."""

import pytest
import torch
from torch import nn

import trainlab
from trainlab.cli import main


def test_build_by_name_and_train_a_step():
    torch.manual_seed(0)
    model = trainlab.mlp([784, 256, 256, 10], activation="tanh", norm="bn",
                         init="xavier_uniform")
    opt = trainlab.build_optimizer("adam", model)
    loss_fn = trainlab.losses.LOSSES.build("cross_entropy")
    x, y = torch.randn(32, 784), torch.randint(0, 10, (32,))
    first = loss_fn(model(x), y)
    for _ in range(5):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
    assert loss.item() < first.item()
    assert isinstance(model.block2.norm, nn.Module) and isinstance(model.block2.act, nn.Module)


def test_init_model_on_a_model_trainlab_did_not_build():
    class Mine(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3)
            self.fc = nn.Linear(8, 2)

        def forward(self, x):
            return self.fc(self.conv(x).mean((2, 3)))

    m = trainlab.init_model(Mine(), "he_normal", generator=torch.Generator().manual_seed(0))
    fan_in = 3 * 3 * 3
    assert abs(m.conv.weight.std().item() - (2 / fan_in) ** 0.5) < 0.1 * (2 / fan_in) ** 0.5
    assert torch.all(m.fc.bias == 0)


FAMILIES = ["activation", "init", "norm", "optim", "loss", "model", "dataset", "preprocess"]


@pytest.mark.parametrize("family", FAMILIES)
def test_list_family(capsys, family):
    assert main(["list", family]) == 0
    out = capsys.readouterr().out
    reg = trainlab.Registry.family_of(family)
    for entry in reg:
        assert entry.name in out


def test_every_entry_has_a_description():
    trainlab.load_all_families()
    for reg in trainlab.Registry.families().values():
        if reg.family.endswith("_test"):
            continue
        for entry in reg:
            assert entry.description, f"{reg.family}:{entry.name} has no description"


def test_unknown_attribute():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        trainlab.nope  # noqa: B018
