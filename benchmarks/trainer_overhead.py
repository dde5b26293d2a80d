"""Trainer overhead: steps/s of ``Trainer.fit`` against two plain PyTorch loops.

Same model (an MLP), same optimizer (SGD + momentum), same in-memory data, measured in one
run, interleaved in a rotating order and repeated (best of ``--repeats``):

* **hand-written**: a minimal loop over on-device data — one ``randperm`` per epoch, one
  ``index_select`` per batch, forward, ``cross_entropy``, ``zero_grad``, ``backward``, ``step``,
  no host synchronisation;
* **DataLoader**: the textbook loop over ``DataLoader(TensorDataset(x, y), shuffle=True)``
  on CPU tensors, each batch moved to the device;
* **Trainer**: ``Trainer(...).fit((x, y), steps=...)`` with its default logging cadence
  (divergence check, snapshot and History row every ``log_every`` steps), no progress bar.

Targets: Trainer ≥ 0.97× the hand-written loop and ≥ 2× the DataLoader loop.

The second ratio is bounded by the model: it is (step + DataLoader's per-batch collation) /
(step + our per-batch cost), so it reaches 2× only where one step costs less than the
DataLoader's collation of a batch (about 0.3 ms for 128 examples on a 2-core CPU): small
models on CPU, most models on a GPU. ``--features 32 --width 64 --depth 2`` shows that case.

    python benchmarks/trainer_overhead.py                       # CPU or CUDA, auto
    python benchmarks/trainer_overhead.py --device cuda --width 1024 --steps 3000
    python benchmarks/trainer_overhead.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F
from torch import nn

from trainlab.train import Trainer
from trainlab.utils import resolve_device


def make_model(d_in: int, width: int, depth: int, classes: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Flatten()]
    for i in range(depth):
        layers += [nn.Linear(d_in if i == 0 else width, width), nn.ReLU()]
    layers.append(nn.Linear(width, classes))
    return nn.Sequential(*layers)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def hand_loop(model, opt, x, y, steps, batch_size, seed) -> None:
    g = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    per_epoch = -(-n // batch_size)
    done = 0
    while done < steps:
        perm = torch.randperm(n, generator=g).to(x.device)
        for i in range(per_epoch):
            if done == steps:
                return
            idx = perm[i * batch_size : (i + 1) * batch_size]
            xb, yb = x.index_select(0, idx), y.index_select(0, idx)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1


def dataloader_loop(model, opt, x_cpu, y_cpu, steps, batch_size, seed, device) -> None:
    ds = torch.utils.data.TensorDataset(x_cpu, y_cpu)
    g = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, generator=g)
    done = 0
    while done < steps:
        for xb, yb in loader:
            if done == steps:
                return
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--examples", type=int, default=20000)
    ap.add_argument("--features", type=int, default=784)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--json", default=None, help="write the results here")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    device = resolve_device(a.device)
    gen = torch.Generator().manual_seed(0)
    x_cpu = torch.randn(a.examples, a.features, generator=gen)
    y_cpu = torch.randint(0, 10, (a.examples,), generator=gen)
    x, y = x_cpu.to(device), y_cpu.to(device)

    def fresh():
        model = make_model(a.features, a.width, a.depth, 10, seed=0).to(device)
        return model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def run_hand() -> None:
        model, opt = fresh()
        hand_loop(model, opt, x, y, a.steps, a.batch_size, 0)

    def run_loader() -> None:
        model, opt = fresh()
        dataloader_loop(model, opt, x_cpu, y_cpu, a.steps, a.batch_size, 0, device)

    def run_trainer() -> None:
        model, opt = fresh()
        t = Trainer(model, optimizer=opt, loss=F.cross_entropy, device=device, progress=False)
        t.fit((x, y), steps=a.steps, batch_size=a.batch_size)

    runs = {"hand-written": run_hand, "dataloader": run_loader, "trainer": run_trainer}
    for fn in runs.values():  # warm-up: allocator, kernels, lazy imports
        fn()
    best = {k: float("inf") for k in runs}
    names = list(runs)
    for r in range(a.repeats):
        # rotate the order each repeat so no loop always runs right after the DataLoader one
        for name in names[r % 3 :] + names[: r % 3]:
            fn = runs[name]
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            best[name] = min(best[name], time.perf_counter() - t0)
    sps = {k: a.steps / v for k, v in best.items()}
    result = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "model": f"MLP {a.features}-{'-'.join([str(a.width)] * a.depth)}-10",
        "batch_size": a.batch_size,
        "steps": a.steps,
        "steps_per_s": {k: round(v, 1) for k, v in sps.items()},
        "trainer_vs_hand": round(sps["trainer"] / sps["hand-written"], 3),
        "trainer_vs_dataloader": round(sps["trainer"] / sps["dataloader"], 2),
    }
    for k, v in sps.items():
        print(f"{k:>13}: {v:9.1f} steps/s")
    print(f"Trainer / hand-written: {result['trainer_vs_hand']:.3f}x (target >= 0.97)")
    print(f"Trainer / DataLoader:   {result['trainer_vs_dataloader']:.2f}x (target >= 2)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
