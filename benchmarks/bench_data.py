"""Data benchmarks: Shapeset generation rate and DeviceBatcher vs DataLoader.

1. Shapeset-3x2 images generated per second (target: >= 10,000 images/s on a 2-core CPU).
2. Batches per second of one shuffled epoch at batch 128: ``trainlab.data.DeviceBatcher``
   against ``torch.utils.data.DataLoader(TensorDataset(x, y), shuffle=True)`` (the batches
   moved to the device inside the loop, as a training loop must), measured in the same run;
   the ratio is printed (target: >= 5x).

Usage::

    python benchmarks/bench_data.py                 # CPU, all threads
    python benchmarks/bench_data.py --threads 2     # as on a 2-core machine
    python benchmarks/bench_data.py --device cuda
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from torch.utils.data import DataLoader, TensorDataset

from trainlab.data import DeviceBatcher, ShapesetStream
from trainlab.utils import resolve_device


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_shapeset(n: int, batch: int, repeats: int) -> float:
    stream = ShapesetStream(seed=0)
    stream.sample(min(batch, 1000))  # warm-up
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        done = 0
        while done < n:
            x, _ = stream.sample(min(batch, n - done))
            done += len(x)
        best = max(best, n / (time.perf_counter() - t))
    return best


def bench_batching(n: int, batch: int, device: torch.device, repeats: int) -> tuple[float, float]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)

    def run_device() -> float:
        b = DeviceBatcher(x, y, batch, shuffle=True, seed=0, device=device)
        best = 0.0
        for _ in range(repeats):
            _sync(device)
            t = time.perf_counter()
            k = 0
            for _ in b:
                k += 1
            _sync(device)
            best = max(best, k / (time.perf_counter() - t))
        return best

    def run_loader() -> float:
        loader = DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=True,
                            pin_memory=device.type == "cuda")
        best = 0.0
        for _ in range(repeats):
            _sync(device)
            t = time.perf_counter()
            k = 0
            for xb, yb in loader:
                xb = xb.to(device, non_blocking=True)
                yb = yb.to(device, non_blocking=True)
                k += 1
            _sync(device)
            best = max(best, k / (time.perf_counter() - t))
        return best

    return run_device(), run_loader()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu, cuda, auto")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument("--images", type=int, default=50_000, help="Shapeset images to generate")
    p.add_argument("--examples", type=int, default=60_000, help="examples per epoch")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs, load average {load:.1f} (other processes slow multi-threaded "
          "kernels down: compare with --threads 1 on a busy machine)")

    rate = bench_shapeset(args.images, 10_000, args.repeats)
    verdict = "PASS" if rate >= 10_000 else "FAIL"
    print(f"shapeset generation: {rate:,.0f} images/s (target >= 10,000)  {verdict}")

    dev, ref = bench_batching(args.examples, args.batch_size, device, args.repeats)
    ratio = dev / ref
    verdict = "PASS" if ratio >= 5 else "FAIL"
    print(f"batching at batch {args.batch_size}: DeviceBatcher {dev:,.0f} batches/s, "
          f"DataLoader(TensorDataset) {ref:,.0f} batches/s, ratio {ratio:.1f}x "
          f"(target >= 5x)  {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
