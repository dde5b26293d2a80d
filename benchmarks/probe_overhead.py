"""Probe overhead: step time with probes over step time without, measured in one run.

Two models, each trained with SGD on a fixed random batch (data loading is not timed):

- ``mlp``: 784 → 6 hidden layers of 256 tanh units → 10, batch 128;
- ``cnn``: 1×28×28 → conv3×3(16) → ReLU → conv3×3/2(32) → ReLU → conv3×3/2(32) → ReLU →
  Linear(10), batch 128.

Probe sets (ActivationStats + GradientStats + WeightStats + UpdateRatio on their default
layers; JacobianSpectrum is not included — its cost is stated in its docstring):

- ``(a) moments every step``: every statistic except histograms, at every step;
- ``(b) default schedule``: the probes' default schedules (moments at 0, 1, 2, 4, ..., 32
  and every 50 steps; histograms at 0, 1, 10, 100 and every 1000 steps);
- ``(c) histograms every step``: (a) plus every histogram at every step.

(b) is shown twice: counting steps from 0 (the first ~600 steps, which hold the dense
log-spaced early part of both schedules: 7 moment steps and 4 histogram steps before step
50 and 100) and from step 2000 (the steady state of a long run).

Method: one model and optimizer, ``rounds`` rounds; in each round every
configuration (and the bare model) runs ``block`` consecutive steps (100: two logged steps per
block in the steady state of (b)), in a rotated order, and the ratio to the bare model's
time in the same round is taken; the table shows the median ratio over rounds. Each
configuration keeps its own step counter across rounds so schedules advance as in a real
run. The last three rows split (a) into its probes. The host synchronisation
(``records()``) at the end of each block is included in the probed time (a real run syncs
less often: once per 64 logged steps). The probes are attached at the start of their own
block and detached after it, outside the timed part: a probe keeps its hooks registered while
consecutive steps are logged, and they must not run, even as no-ops, in the blocks of the
other configurations (so the bare model is timed without any hook).

On a small CPU, (a) is bounded below by the passes over the data, not by Python: for the MLP
the weights (2 MB) are read about eight times per step (WeightStats: sum, sum of squares,
min, max; UpdateRatio: copy, norm, subtract, norm) and each of the 12 activation tensors and
7 gradient tensors two to four times, about 0.7 ms even with everything in cache, against
a 1.10× budget of 0.5 ms on one thread (0.3 ms on two). Single-pass fused kernels
(sum, sum of squares, min and max in one read) would be needed to get there. The probes'
optional ``torch.compile`` path (``--fused both``) gives them, but measured on a shared
2-core CPU (torch 2.13, 6 rounds) it moved (a) only from 1.52× to 1.44× for the CNN and not
measurably for the MLP (2.20× vs 2.28×, within noise): what is left is the percentile
subsample and sort, the dead-unit reductions, UpdateRatio's copy and per-call Python.

``--fused both`` adds, interleaved in the same rounds, the (a) rows with the probes' fused
``torch.compile`` statistics path on (``trainlab.probes.set_fused``; its compile time is in
the warm-up, not in the table), so the eager and fused ratios come from one invocation;
``--fused on`` / ``off`` runs every configuration with the path on / off.

``--pack M`` times a :class:`~trainlab.engine.pack.PackTrainer` instead: ``M`` members of
``mlp(40, [100] * 5, 10)`` (the fast path, batched matmuls), batch 128, SGD, with
ActivationStats + GradientStats every step (no histograms) inside the pack against the same
pack without probes, and the two probes alone; each round fits every configuration for
``block`` steps (one sync point per fit: ``log_every = block``), in a rotated order, and the
table shows the median ratio to the bare pack's fit in the same round. Measured on the
shared 2-core CPU (one thread, load average about 5, torch 2.13; 4 rounds x 50 steps):
1.50x for both probes (ActivationStats 1.26x, GradientStats 1.22x), a bare step of 122 ms;
the same two probes on one such MLP in the Trainer cost 2.15x (8.2 -> 18.7 ms per step), so
per member the pack's probes cost about a fifth of the Trainer's.

Run::

    python benchmarks/probe_overhead.py            # default: 12 rounds × 100 steps
    python benchmarks/probe_overhead.py --pack 32 --rounds 4 --block 50 --threads 1
    python benchmarks/probe_overhead.py --rounds 6 --fused both
    python benchmarks/probe_overhead.py --rounds 30 --block 50 --threads 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from torch import nn

from trainlab.probes import ActivationStats, GradientStats, UpdateRatio, WeightStats, set_fused


def mlp() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    layers: list[nn.Module] = [nn.Flatten()]
    d = 784
    for _ in range(6):
        layers += [nn.Linear(d, 256), nn.Tanh()]
        d = 256
    layers.append(nn.Linear(256, 10))
    return nn.Sequential(*layers), torch.randn(128, 784), torch.randint(0, 10, (128,))


def cnn() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 10),
    )
    return model, torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))


def probe_set(config: str) -> list:
    config = config.removesuffix("+f")  # the fused variant: same probes
    one = dict(every=1, hist_every=0)
    if config == "a:act":
        return [ActivationStats(**one)]
    if config == "a:grad":
        return [GradientStats(**one)]
    if config == "a:w":
        return [WeightStats(**one), UpdateRatio(every=1)]
    if config == "a":
        kw = dict(every=1, hist_every=0)
    elif config in ("b", "b@2000"):
        kw = {}
    elif config == "c":
        kw = dict(every=1, hist_every=1)
    else:
        raise ValueError(f"config must be 'a', 'b' or 'c'. Received: config={config!r}.")
    return [ActivationStats(**kw), GradientStats(**kw), WeightStats(**kw),
            UpdateRatio(every=kw.get("every"))]


CONFIGS = {
    "none": "no probes",
    "a": "(a) moments every step, no histograms",
    "b": "(b) default schedule, from step 0",
    "b@2000": "(b) default schedule, from step 2000",
    "c": "(c) histograms every step",
    "a:act": "  (a) ActivationStats alone",
    "a:grad": "  (a) GradientStats alone",
    "a:w": "  (a) WeightStats + UpdateRatio alone",
}
FUSED_CONFIGS = {
    "a+f": "(a) fused (torch.compile) statistics",
    "a:act+f": "  (a) fused: ActivationStats alone",
    "a:grad+f": "  (a) fused: GradientStats alone",
    "a:w+f": "  (a) fused: WeightStats + UpdateRatio",
}


def measure(build, rounds: int, block: int, warmup: int = 20,
            fused: str = "off") -> dict[str, list[float]]:
    torch.manual_seed(0)
    model, x, y = build()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    configs = {**CONFIGS, **(FUSED_CONFIGS if fused == "both" else {})}
    probes = {c: probe_set(c) for c in configs if c != "none"}
    steps = dict.fromkeys(configs, 0)
    steps["b@2000"] = 2000  # past the dense early part of the schedules: the steady state
    times: dict[str, list[float]] = {c: [] for c in configs}

    def run(config: str, n: int) -> float:
        set_fused(fused == "on" or config.endswith("+f"))
        ps = probes.get(config, [])
        # Attached for this block only (outside the timed part): a probe keeps its hooks
        # registered while consecutive steps are logged, and those must not run (even as
        # no-ops) in the other configurations' blocks.
        for p in ps:
            p.attach(model)
        t0 = time.perf_counter()
        for _ in range(n):
            s = steps[config]
            for p in ps:
                p.step_begin(s)
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), y).backward()
            for p in ps:
                p.after_backward(s)
            opt.step()
            for p in ps:
                p.step_end(s)
            steps[config] = s + 1
        for p in ps:
            p.records()  # the host sync belongs to the probed time
            p.histograms()
        dt = time.perf_counter() - t0
        for p in ps:
            p.detach()
            p.clear()
        return dt

    for c in configs:
        run(c, warmup)
    order = list(configs)
    for r in range(rounds):
        rot = order[r % len(order):] + order[: r % len(order)]
        for c in rot:
            times[c].append(run(c, block))
    set_fused(None)
    return times


PACK_CONFIGS = {
    "none": "no probes",
    "a:act+grad": "ActivationStats + GradientStats every step",
    "a:act": "  ActivationStats alone",
    "a:grad": "  GradientStats alone",
}


def measure_pack(members: int, rounds: int, block: int, device: str = "cpu",
                 warmup: int = 10) -> dict[str, list[float]]:
    """Seconds per ``block``-step fit of each :data:`PACK_CONFIGS` pack, per round."""
    from trainlab.engine.pack import Pack, PackTrainer
    from trainlab.models import mlp as mlp_builder

    g = torch.Generator().manual_seed(0)
    x = torch.randn(128 * 40, 40, generator=g)
    y = torch.randint(0, 10, (128 * 40,), generator=g)
    one = dict(every=1, hist_every=0)
    sets = {"none": False, "a:act+grad": lambda: [ActivationStats(**one), GradientStats(**one)],
            "a:act": lambda: [ActivationStats(**one)], "a:grad": lambda: [GradientStats(**one)]}
    trainers = {}
    for c, probes in sets.items():
        torch.manual_seed(0)
        pack = Pack([mlp_builder(40, [100] * 5, 10) for _ in range(members)])
        trainers[c] = PackTrainer(pack, optimizer="sgd", lr=0.01, device=device,
                                  log_every=block, progress=False,
                                  probes=probes() if callable(probes) else probes)
    times: dict[str, list[float]] = {c: [] for c in sets}

    def run(c: str, n: int) -> float:
        t0 = time.perf_counter()
        trainers[c].fit((x, y), steps=n, batch_size=128)  # ends with the sync point
        if device != "cpu":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    for c in sets:
        run(c, warmup)
    order = list(sets)
    for r in range(rounds):
        for c in order[r % len(order):] + order[: r % len(order)]:
            times[c].append(run(c, block))
    return times


def main_pack(args: argparse.Namespace) -> int:
    print(f"pack of {args.pack} x mlp(40, [100]*5, 10), batch 128, {args.rounds} rounds x "
          f"{args.block} steps per configuration, device {args.device}")
    header = f"{'configuration':<44} {'step ms':>8} {'ratio':>7}"
    print(header)
    print("-" * len(header))
    times = measure_pack(args.pack, args.rounds, args.block, args.device)
    base = times["none"]
    for c, ts in times.items():
        ms = statistics.median(ts) / args.block * 1e3
        ratio = statistics.median([t / b for t, b in zip(ts, base)])
        print(f"{PACK_CONFIGS[c]:<44} {ms:8.2f} {ratio:7.3f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--block", type=int, default=100)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--fused", choices=("off", "on", "both"), default="off",
                    help="the probes' torch.compile statistics path: off, on, or both "
                         "(the (a) rows timed with it too, interleaved; default off)")
    ap.add_argument("--pack", type=int, default=0, metavar="M",
                    help="time a PackTrainer of M MLPs with probes inside (see above)")
    ap.add_argument("--device", default="cpu", help="the pack's device (with --pack)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.pack:
        return main_pack(args)
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, "
          f"load average {load}; {args.rounds} rounds × {args.block} steps per configuration")
    print("(a) records at every step everything the probes record by default except "
          "histograms: pre/act mean, std, min, max, p15/50/85/98, saturated and dead "
          "fractions; grad_out mean, std, norm, min, max; grad_w mean, std, norm; w mean, "
          "std, norm, min, max; update ratio and norm.")
    header = f"{'model':<5} {'configuration':<40} {'step ms':>8} {'ratio':>7} {'target':>7}"
    print(header)
    print("-" * len(header))
    targets = {"a": "1.10", "a+f": "1.10", "b": "1.02", "b@2000": "1.02"}
    descs = {**CONFIGS, **FUSED_CONFIGS}
    for name, build in (("mlp", mlp), ("cnn", cnn)):
        times = measure(build, args.rounds, args.block, fused=args.fused)
        base = times["none"]
        for c in times:
            desc = descs[c] + (" [fused]" if args.fused == "on" else "")
            ms = statistics.median(times[c]) / args.block * 1e3
            ratios = [t / b for t, b in zip(times[c], base)]
            ratio = statistics.median(ratios)
            print(f"{name:<5} {desc:<40} {ms:8.3f} {ratio:7.3f} {targets.get(c, ''):>7}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
