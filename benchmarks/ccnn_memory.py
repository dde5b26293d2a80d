"""CCNN peak memory and time: the authors' 2-layer MNIST setup against their ~10 GB.

The authors' code (github.com/zhangyuc/CCNN, ``src/mnist/CCNN.py``) caches every feature
vector of every image; its README reports ~10 GB for the MNIST variants. Its 2-layer setup,
reproduced here with :class:`trainlab.engine.ccnn.CCNN`:

====== ======= ======== ===== ====== ==== ===== =========================================
layer  patch   features gamma pool   R    lr    iterations (x 10 steps of 50 images)
====== ======= ======== ===== ====== ==== ===== =========================================
1      5 x 5   500 RFF  0.2   2 x 2  200  0.2   1000 (= 50 epochs of 10,000 images)
2      5 x 5   1000 RFF 2.0   2 x 2  500  1.0   2000 (= 100 epochs)
====== ======= ======== ===== ====== ==== ===== =========================================

with 10,000 training images, 16 filters passed from layer 1 to layer 2 (the code's
``max_channel=16``), a projection every 10 steps and averaged iterates. Layer 1's features
(10,000 x 144 x 500) would take 2.9 GB in float32, so they are recomputed per mini-batch from
the images (streamed); layer 2's (10,000 x 16 x 1000, 320 MB in float16) are cached.

Memory is measured as the peak resident set size (RSS) of this process during ``fit``,
sampled every 5 ms from ``/proc/self/statm`` (``ru_maxrss`` is printed too), minus the RSS
just before ``fit`` (torch, the data); on CUDA also ``torch.cuda.max_memory_allocated``.
The "reference" column is what the authors' caching would hold for the same images:
``n * positions * features * 4`` bytes per layer (float32), next to the README's ~10 GB.

Measured once here (2-core CPU shared by ~8 jobs, so the time means nothing): 10,000 training
and 1,000 test MNIST images, 1 epoch per layer (memory does not grow with epochs): peak RSS
662 MiB above the 261 MiB before ``fit`` (923 MiB in all), layer 1 streamed, layer 2 cached in
float16; the reference's caching would hold 3,021 + 671 MiB of features for the same images.

    python benchmarks/ccnn_memory.py --data /path/with/mnist     # paper setup (slow on CPU)
    python benchmarks/ccnn_memory.py --quick                      # small check that it runs
    python benchmarks/ccnn_memory.py --device cuda --json out.json

MNIST is read by trainlab's loader (``--data`` folder, else ``$TRAINLAB_DATA`` or the cache);
without it random images of MNIST's shape are used (memory and time do not depend on the
pixels; the errors then mean nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import threading
import time

import torch

from trainlab.engine.ccnn import CCNN, CCNNLayer
from trainlab.utils import resolve_device

MiB = 2**20


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: fall back to the high-water mark
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakRSS:
    """Samples the RSS in a thread; ``peak`` is the largest value seen."""

    def __init__(self, every: float = 0.005) -> None:
        self.every, self.peak, self._stop = every, rss_bytes(), threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(self.every)

    def __enter__(self) -> PeakRSS:
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, rss_bytes())


def load(n_train: int, n_test: int, root: str | None):
    try:
        from trainlab.data import load_dataset

        ds = load_dataset("mnist", root=root, n_train=n_train, n_test=n_test)
        return ds.x_train, ds.y_train, ds.x_test, ds.y_test, "mnist"
    except Exception as e:  # noqa: BLE001 - any failure: use stand-in images, say so
        print(f"MNIST not available ({str(e).splitlines()[0][:100]}); using random images.")
        g = torch.Generator().manual_seed(0)
        return (torch.rand(n_train, 1, 28, 28, generator=g),
                torch.randint(0, 10, (n_train,), generator=g),
                torch.rand(n_test, 1, 28, 28, generator=g),
                torch.randint(0, 10, (n_test,), generator=g), "random")


def build(args) -> CCNN:
    common = dict(patch=5, pool=2, batch_size=50, project_every=10, average="epoch")
    return CCNN([
        CCNNLayer(features=args.features1, gamma=0.2, radius=200.0, lr=0.2, rank=16,
                  epochs=args.epochs1, **common),
        CCNNLayer(features=args.features2, gamma=2.0, radius=500.0, lr=1.0, rank=16,
                  epochs=args.epochs2, **common),
    ], device=args.device, cache=args.cache, memory_budget=args.budget_mib * MiB,
        eval_every=args.eval_every, seed=0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="300/100 images, 1 epoch per layer")
    p.add_argument("--n-train", type=int, default=10000)
    p.add_argument("--n-test", type=int, default=10000)
    p.add_argument("--epochs1", type=int, default=50)
    p.add_argument("--epochs2", type=int, default=100)
    p.add_argument("--features1", type=int, default=500)
    p.add_argument("--features2", type=int, default=1000)
    p.add_argument("--eval-every", type=int, default=10)
    p.add_argument("--cache", default="auto", choices=["auto", "none", "float16", "float32"])
    p.add_argument("--budget-mib", type=int, default=384, help="feature cache budget (MiB)")
    p.add_argument("--device", default="auto")
    p.add_argument("--data", default=None, help="folder holding MNIST (trainlab's loader)")
    p.add_argument("--json", default=None, help="write the results to this file")
    args = p.parse_args()
    if args.quick:
        args.n_train, args.n_test, args.epochs1, args.epochs2 = 300, 100, 1, 1
        args.eval_every = 1
    args.device = str(resolve_device(args.device))

    x, y, xt, yt, source = load(args.n_train, args.n_test, args.data)
    net = build(args)
    dev = torch.device(args.device)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    before = rss_bytes()
    t0 = time.perf_counter()
    with PeakRSS() as peak:
        hist = net.fit(x, y, xt, yt, on_epoch=lambda r: print(
            f"  layer {r['layer'] + 1} epoch {r['epoch']}: objective {r['objective']:.4f} "
            f"train {r['train_error']:.4f} test {r.get('test_error', float('nan')):.4f}",
            flush=True))
    wall = time.perf_counter() - t0
    n = args.n_train + args.n_test
    positions = [net.layers[0].weight.shape[1], net.layers[1].weight.shape[1]]
    ref_bytes = [n * positions[0] * args.features1 * 4, n * positions[1] * args.features2 * 4]
    out = {
        "data": source, "n_train": args.n_train, "n_test": args.n_test,
        "device": args.device, "epochs": [args.epochs1, args.epochs2],
        "cache": hist.cache, "seconds": round(wall, 1),
        "seconds_per_layer": [hist.series("seconds", layer=i)[-1] for i in range(2)],
        "peak_rss_delta_mib": round((peak.peak - before) / MiB, 1),
        "peak_rss_mib": round(peak.peak / MiB, 1),
        "ru_maxrss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "reference_feature_cache_mib": [round(b / MiB) for b in ref_bytes],
        "reference_reported_gib": 10,
        "test_error": hist.series("test_error", layer=1)[-1],
        "test_error_layer1": hist.series("test_error", layer=0)[-1],
    }
    if dev.type == "cuda":
        out["cuda_max_allocated_mib"] = round(torch.cuda.max_memory_allocated(dev) / MiB, 1)
    print(f"\nCCNN-2 on {source}: {args.n_train} train / {args.n_test} test images, "
          f"{args.device}, epochs {args.epochs1}+{args.epochs2}, features cached as {hist.cache}")
    print(f"  time                  {wall:.1f} s")
    print(f"  peak RSS during fit   {out['peak_rss_delta_mib']} MiB above the "
          f"{before / MiB:.0f} MiB before fit (peak {out['peak_rss_mib']} MiB)")
    if "cuda_max_allocated_mib" in out:
        print(f"  CUDA max allocated    {out['cuda_max_allocated_mib']} MiB")
    print(f"  reference code        caches {ref_bytes[0] / MiB:.0f} + {ref_bytes[1] / MiB:.0f} "
          f"MiB of features for these images; README reports ~10 GB")
    print(f"  test error            layer 1 {out['test_error_layer1']:.4f}, "
          f"layer 2 {out['test_error']:.4f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
