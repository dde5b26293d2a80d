"""Models trainlab did not build, written here so the tests need no torchvision or timm.

Each factory returns ``(model, x, y)``: a small model in the style of a well-known library and
one batch that fits it. They exercise what trainlab's own builders never produce:

- ``resnet``: torchvision's BasicBlock (``nn.ReLU(inplace=True)``, BN, a strided downsample
  branch, the residual add);
- ``mobilenet``: MobileNetV3-style inverted residuals with squeeze-excite gates, Hardswish,
  Hardsigmoid, Hardtanh, Mish and LogSigmoid;
- ``transformer``: token embedding, a free ``cls_token`` and ``pos_embed`` parameter, an
  ``nn.TransformerEncoder`` (``MultiheadAttention.in_proj_weight``), a linear head;
- ``lstm``: an ``nn.LSTM`` classifier on sequence-first input ``(T, N, F)``;
- ``gru``: an ``nn.GRU`` classifier, batch-first;
- ``tied``: a weight-tied token model (the output projection shares the embedding matrix);
- ``shared``: one ``nn.Linear`` (and one activation module) called three times per forward.
"""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    """torchvision's ``BasicBlock``: conv-bn-relu-conv-bn, + identity or 1x1 downsample."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class TinyResNet(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(BasicBlock(8, 8), BasicBlock(8, 8))
        self.layer2 = nn.Sequential(BasicBlock(8, 16, stride=2), BasicBlock(16, 16))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class SqueezeExcite(nn.Module):
    def __init__(self, c: int, r: int = 4) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(c, c // r, 1)
        self.relu = nn.ReLU()
        self.fc2 = nn.Conv2d(c // r, c, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.fc2(self.relu(self.fc1(s))))


class InvertedResidual(nn.Module):
    def __init__(self, c: int, expand: int, act: nn.Module) -> None:
        super().__init__()
        h = c * expand
        self.expand = nn.Sequential(nn.Conv2d(c, h, 1, bias=False), nn.BatchNorm2d(h), act)
        self.depthwise = nn.Sequential(
            nn.Conv2d(h, h, 3, 1, 1, groups=h, bias=False), nn.BatchNorm2d(h), nn.Hardswish())
        self.se = SqueezeExcite(h)
        self.project = nn.Sequential(nn.Conv2d(h, c, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.project(self.se(self.depthwise(self.expand(x))))


class TinyMobileNet(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8),
                                  nn.Hardswish())
        self.blocks = nn.Sequential(
            InvertedResidual(8, 2, nn.Hardtanh()),
            InvertedResidual(8, 2, nn.Mish()),
            InvertedResidual(8, 2, nn.Hardswish()),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Linear(8, 16), nn.LogSigmoid(), nn.Linear(16, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


class TinyTransformer(nn.Module):
    """ViT-style: tokens -> embedding, a learned cls token and position embedding, encoder."""

    def __init__(self, vocab: int = 50, seq: int = 12, d: int = 16, classes: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.randn(1, seq + 1, d) * 0.02)
        layer = nn.TransformerEncoderLayer(d, nhead=2, dim_feedforward=32, dropout=0.0,
                                           batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1) + self.pos_embed
        return self.head(self.norm(self.encoder(x))[:, 0])


class LSTMClassifier(nn.Module):
    """Sequence-first, as ``nn.LSTM`` is by default: input ``(T, N, F)``."""

    def __init__(self, features: int = 6, hidden: int = 16, classes: int = 3) -> None:
        super().__init__()
        self.lstm = nn.LSTM(features, hidden, num_layers=2)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.head(out[-1])


class GRUClassifier(nn.Module):
    def __init__(self, features: int = 6, hidden: int = 16, classes: int = 3) -> None:
        super().__init__()
        self.gru = nn.GRU(features, hidden, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(x)
        return self.head(out[:, -1])


class TiedTokenModel(nn.Module):
    """Predicts the next token from the mean of the context; output weights = embedding."""

    def __init__(self, vocab: int = 40, d: int = 16) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.hidden = nn.Linear(d, d)
        self.act = nn.Tanh()
        self.out = nn.Linear(d, vocab, bias=False)
        self.out.weight = self.embed.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.hidden(self.embed(tokens).mean(1))))


class SharedModuleNet(nn.Module):
    """One Linear (and one Tanh) applied three times: a weight-shared, unrolled network."""

    def __init__(self, d: int = 16, classes: int = 4) -> None:
        super().__init__()
        self.inp = nn.Linear(8, d)
        self.shared = nn.Linear(d, d)
        self.act = nn.Tanh()
        self.head = nn.Linear(d, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.inp(x))
        for _ in range(3):
            h = self.act(self.shared(h))
        return self.head(h)


def resnet(n: int = 8, seed: int = 0):
    torch.manual_seed(seed)
    return TinyResNet(), torch.randn(n, 3, 16, 16), torch.randint(0, 10, (n,))


def mobilenet(n: int = 8, seed: int = 0):
    torch.manual_seed(seed)
    return TinyMobileNet(), torch.randn(n, 3, 16, 16), torch.randint(0, 10, (n,))


def transformer(n: int = 8, seed: int = 0):
    torch.manual_seed(seed)
    return TinyTransformer(), torch.randint(0, 50, (n, 12)), torch.randint(0, 4, (n,))


def lstm(n: int = 8, seed: int = 0):
    torch.manual_seed(seed)
    return LSTMClassifier(), torch.randn(10, n, 6), torch.randint(0, 3, (n,))


def gru(n: int = 8, seed: int = 0):
    torch.manual_seed(seed)
    return GRUClassifier(), torch.randn(n, 10, 6), torch.randint(0, 3, (n,))


def tied(n: int = 8, seed: int = 0):
    torch.manual_seed(seed)
    return TiedTokenModel(), torch.randint(0, 40, (n, 5)), torch.randint(0, 40, (n,))


def shared(n: int = 8, seed: int = 0):
    torch.manual_seed(seed)
    return SharedModuleNet(), torch.randn(n, 8), torch.randint(0, 4, (n,))


ZOO = {f.__name__: f for f in (resnet, mobilenet, transformer, lstm, gru, tied, shared)}
