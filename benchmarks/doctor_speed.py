"""Doctor speed: the wall time of ``diagnose`` on real-sized models, split by phase, and its
ratio to one plain forward + backward pass of the same batch, measured in the same run.

Models (written here: no torchvision dependency):

- ``resnet18``: torchvision's resnet18 layout — 7×7/2 stem conv, BN, in-place ReLU, 3×3/2 max
  pool, BasicBlocks [2, 2, 2, 2] with widths 64, 128, 256, 512, average pool, Linear(10) —
  on 3×32×32 inputs, batch 128 (the CLI's default batch size);
- ``transformer``: token embedding (vocabulary 1000) + learned position embedding, a 2-layer
  ``nn.TransformerEncoder`` (d_model 128, 4 heads, feed-forward 512, batch-first), mean
  pool, Linear(10); 32 tokens, batch 128.

The target (issue 9, item 14): the whole diagnosis within 10 s on a 2-core CPU with the
default ``time_budget=10``. The Jacobian is the phase the budget cuts (blocks it could not do
are listed as notes); the other phases are one probed pass and the rules.

Run::

    python benchmarks/doctor_speed.py                 # both models, 2 threads
    python benchmarks/doctor_speed.py --models resnet18 --threads 2 --repeat 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

from trainlab.doctor import diagnose

# torchvision's BasicBlock (in-place ReLU, BN, downsample): one definition, in the tests' zoo
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from zoo import BasicBlock  # noqa: E402


class ResNet18(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths, c = (64, 128, 256, 512), 64
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            blocks = nn.Sequential(BasicBlock(c, w, stride), BasicBlock(w, w))
            setattr(self, f"layer{i + 1}", blocks)
            c = w
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class Transformer(nn.Module):
    def __init__(self, vocab: int = 1000, seq: int = 32, d: int = 128, classes: int = 10) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.pos_embed = nn.Parameter(torch.randn(1, seq, d) * 0.02)
        layer = nn.TransformerEncoderLayer(d, nhead=4, dim_feedforward=512, dropout=0.0,
                                           batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.head = nn.Linear(d, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(tokens) + self.pos_embed).mean(1))


def build(name: str) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    if name == "resnet18":
        return ResNet18(), torch.randn(128, 3, 32, 32), torch.randint(0, 10, (128,))
    if name == "transformer":
        return Transformer(), torch.randint(0, 1000, (128, 32)), torch.randint(0, 10, (128,))
    raise ValueError(f"model must be 'resnet18' or 'transformer'. Received: {name!r}.")


def plain_pass(model: nn.Module, x: torch.Tensor, y: torch.Tensor, repeat: int) -> float:
    """Median seconds of one forward + backward (after one warm-up pass)."""
    times = []
    for _ in range(repeat + 1):
        model.zero_grad(set_to_none=True)
        t = time.perf_counter()
        nn.functional.cross_entropy(model(x), y).backward()
        times.append(time.perf_counter() - t)
    model.zero_grad(set_to_none=True)
    return statistics.median(times[1:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["resnet18", "transformer"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3, help="plain passes timed (median)")
    ap.add_argument("--budget", type=float, default=10.0, help="diagnose(time_budget=)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"time_budget={args.budget:g} s")
    for name in args.models:
        model, x, y = build(name)
        plain = plain_pass(model, x, y, args.repeat)
        t = time.perf_counter()
        d = diagnose(model, (x, y), time_budget=args.budget)
        wall = time.perf_counter() - t
        phases = ", ".join(f"{k} {v:.2f}" for k, v in d.timings.items()
                           if k != "total" and v >= 0.005)
        jac = sorted({layer for _, layer, q, _ in d.log.rows if q.startswith("jac_")})
        print(f"\n{name}: {d.context['parameters']:,} parameters, x {tuple(x.shape)}")
        print(f"  plain forward+backward   {plain:.3f} s")
        print(f"  diagnose                 {wall:.2f} s  = {wall / plain:.1f}x the plain pass")
        print(f"  by phase (s)             {phases}")
        print(f"  Jacobian blocks done     {len(jac)}: {', '.join(jac)}")
        for n in d.notes:
            if "Jacobian" in n:
                print(f"  note: {n}")


if __name__ == "__main__":
    main()
