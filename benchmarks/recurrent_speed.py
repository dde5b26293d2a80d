"""Recurrent layers: ms per training step (forward + backward) of trainlab's LSTM per norm.

Against torch's fused ``nn.LSTM`` (the C++ loop) and trainlab's plain LSTM (the same
equations in a Python loop over time, the input term precomputed in one matmul). Same
batch-first input ``(B, T, F)``, same loss (sum of the last hidden state), best of
``--repeats``, variants interleaved in a rotating order.

What to read: ``plain / torch`` is the price of the Python loop (the lectures' norms need
per-step hooks that the fused kernel lacks); ``bn_frame / plain`` etc. the price of each
norm. The study ``bn-rnn`` (MNIST rows: B=64, T=28, F=28, H=64) is the default size.

    python benchmarks/recurrent_speed.py
    python benchmarks/recurrent_speed.py --batch 8 --steps 5 --hidden 16 --iters 3 --repeats 1
    python benchmarks/recurrent_speed.py --device cuda --batch 256 --hidden 256 --json out.json
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch import nn

from trainlab.nn.recurrent import LSTM, RECURRENT_NORMS
from trainlab.utils import resolve_device


def _time(fn, iters: int, device: torch.device) -> float:
    fn()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / iters * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=28, help="time steps T")
    p.add_argument("--features", type=int, default=28)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", help="write the results to this file")
    a = p.parse_args()
    device = resolve_device(a.device)
    torch.manual_seed(0)
    x = torch.randn(a.batch, a.steps, a.features, device=device)
    models = {"torch": nn.LSTM(a.features, a.hidden, batch_first=True).to(device)}
    for name in RECURRENT_NORMS.names():
        models[name] = LSTM(a.features, a.hidden, name, T_max=a.steps).to(device)

    def step(m: nn.Module) -> None:
        m.zero_grad(set_to_none=True)
        out, _ = m(x)
        out[:, -1].sum().backward()

    best = {k: float("inf") for k in models}
    names = list(models)
    for r in range(a.repeats):
        for k in names[r % len(names):] + names[: r % len(names)]:
            best[k] = min(best[k], _time(lambda k=k: step(models[k]), a.iters, device))
    size = f"B={a.batch} T={a.steps} F={a.features} H={a.hidden} on {device}"
    print(f"LSTM training step (forward + backward), ms, best of {a.repeats}: {size}")
    for k in names:
        print(f"  {k:<9} {best[k]:8.2f} ms   x{best[k] / best['none']:.2f} of plain")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"size": size, "ms": best}, f, indent=2)


if __name__ == "__main__":
    main()
