"""Pre-training's time relative to plain training of the same network.

Same MLP (``--depth`` hidden layers of ``--width``), same in-memory data, same batch size.
Measured, best of ``--repeats``, in a rotating order:

* **plain**: ``Trainer(...).fit((x, y), steps=S)`` — ``S`` supervised steps;
* **pretrain METHOD**: :func:`trainlab.engine.pretraining.pretrain` with
  ``--pretrain-steps P`` steps
  per hidden layer (``autoencoder``, ``denoising``, ``rbm``), then nothing else.

Printed: seconds per run, seconds per step, and two ratios — the whole pre-training phase
against the plain run (what ``--pretrain`` adds to a run of ``S`` fine-tuning steps), and the
cost of one pre-training step against one supervised step (an autoencoder step trains one
layer and its decoder; a CD-1 step is two matrix products each way, no autograd).

    python benchmarks/pretrain_speed.py                           # CPU or CUDA, auto
    python benchmarks/pretrain_speed.py --tiny                    # a few seconds: it works
    python benchmarks/pretrain_speed.py --device cuda --width 2048 --steps 2000
    python benchmarks/pretrain_speed.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from trainlab.engine.pretraining import pretrain
from trainlab.nn import mlp
from trainlab.train import Trainer
from trainlab.utils import resolve_device

METHODS = ("autoencoder", "denoising", "rbm")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--steps", type=int, default=1000, help="supervised steps of the plain run")
    ap.add_argument("--pretrain-steps", type=int, default=None,
                    help="pre-training steps per hidden layer (default: --steps)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--examples", type=int, default=10000)
    ap.add_argument("--features", type=int, default=784)
    ap.add_argument("--width", type=int, default=500)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--tiny", action="store_true", help="a tiny size, to check it runs")
    ap.add_argument("--json", default=None, help="write the results here")
    a = ap.parse_args()
    if a.tiny:
        a.steps, a.examples, a.features, a.width, a.depth, a.repeats = 20, 256, 32, 32, 2, 1
    psteps = a.pretrain_steps or a.steps
    device = resolve_device(a.device)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(a.examples, a.features, generator=g)  # in [0, 1]: suits Bernoulli RBMs
    y = torch.randint(0, 10, (a.examples,), generator=g)
    xd, yd = x.to(device), y.to(device)

    def build() -> torch.nn.Module:
        torch.manual_seed(0)
        return mlp(a.features, [a.width] * a.depth, 10, activation="sigmoid").to(device)

    def plain() -> float:
        model = build()
        tr = Trainer(model, "sgd", lr=0.1, device=device, progress=False, log_every=100)
        _sync(device)
        t = time.perf_counter()
        tr.fit((xd, yd), steps=a.steps, batch_size=a.batch_size)
        _sync(device)
        return time.perf_counter() - t

    def pre(method: str) -> float:
        model = build()
        lr = 0.05 if method == "rbm" else None
        _sync(device)
        t = time.perf_counter()
        pretrain(model, xd, method, steps=psteps, batch_size=a.batch_size, lr=lr,
                 log_every=max(psteps // 10, 1))
        _sync(device)
        return time.perf_counter() - t

    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    jobs = {"plain": plain, **{m: (lambda m=m: pre(m)) for m in methods}}
    if a.repeats == 1:  # warm-up (imports, kernels, allocator); with repeats, best-of does it
        for fn in jobs.values():
            fn()
    best = {k: float("inf") for k in jobs}
    names = list(jobs)
    for r in range(a.repeats):
        for k in names[r % len(names):] + names[: r % len(names)]:
            best[k] = min(best[k], jobs[k]())

    t_plain = best["plain"]
    per_plain = t_plain / a.steps
    print(f"device {device}, MLP {a.features}-{'-'.join([str(a.width)] * a.depth)}-10 "
          f"(sigmoid), batch {a.batch_size}, {a.examples} examples; plain: {a.steps} steps, "
          f"pre-training: {psteps} steps x {a.depth} layers; best of {a.repeats}")
    print(f"{'run':<12} {'seconds':>9} {'ms/step':>9} {'phase/plain':>12} {'step/step':>10}")
    print(f"{'plain':<12} {t_plain:9.3f} {1e3 * per_plain:9.3f} {1.0:12.2f} {1.0:10.2f}")
    results = {"config": vars(a), "device": str(device), "plain_s": t_plain, "methods": {}}
    for m in methods:
        t = best[m]
        per = t / (psteps * a.depth)
        ratio, step_ratio = t / t_plain, per / per_plain
        print(f"{m:<12} {t:9.3f} {1e3 * per:9.3f} {ratio:12.2f} {step_ratio:10.2f}")
        results["methods"][m] = {"seconds": t, "ms_per_step": 1e3 * per,
                                 "ratio_phase_to_plain": ratio, "ratio_step_to_step": step_ratio}
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
