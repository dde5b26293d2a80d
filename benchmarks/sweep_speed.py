"""Sweep speed: a vectorized pack against the same runs one by one, and against a plain
``torch.func.vmap`` ensemble, measured in one run (issue 12).

Workload: ``M`` members of a 5 x 100 ReLU MLP (``mlp(40, [100] * 5, 10)``) on MNIST-1D
(4000 training sequences of length 40), batch 128, SGD with one learning rate per member,
``--steps`` steps each, the Trainer's default logging (every 50 steps) and evaluation (once
per epoch) in both the pack and the Trainer.

Measured, each in this process and this run:

1. ``pack / sequential``: 32 runs with :class:`trainlab.train.Trainer`, one after another,
   against one :class:`trainlab.train.PackTrainer` of the same 32 members (target: >= 8x on
   a 2-core CPU; issue 23 replaced it by the roofline fraction and the overhead-bound target);
2. ``pack / vmap``: the same pack against a plain ``torch.func`` ensemble
   (``stack_module_state`` + ``vmap(functional_call)`` + one ``torch.optim.SGD`` over the
   stacked tensors, per-member batches by indexing, the test split evaluated once per epoch
   and at the end as the pack and the Trainer do): the common recipe from torch's docs;
3. scaling: pack time per member-step for ``M`` = 1, 4, 16, 64, 256;
4. ``pack of 1 / Trainer``: the overhead of the pack machinery on one model (target
   <= 1.10x);
6. the roofline: the machine's matmul throughput (a 2048 x 2048 ``torch.mm``, GFLOP/s) and
   the pack step's achieved throughput on the workload above (its matmul FLOPs, forward +
   backward, per second of training), as a fraction (target >= 60% on the 2-core CPU);
7. an overhead-bound workload: 32 members of ``mlp(40, [32] * 3, 10)``, batch 32, where the
   per-step Python and kernel launches dominate: pack against sequential Trainers (target
   >= 25x);
5. peak memory per member: the slope of the peak resident memory a pack of ``M`` members
   adds in a fresh process, against ``M`` (least squares; Linux ``/proc``), or of
   ``torch.cuda.max_memory_allocated`` (CUDA).

Run::

    python benchmarks/sweep_speed.py                  # the real numbers (minutes on 2 cores)
    python benchmarks/sweep_speed.py --quick          # a tiny check that it all runs
    python benchmarks/sweep_speed.py --threads 2 --steps 300 --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch


def _data(n_train: int | None):
    from trainlab.data import load_dataset

    return load_dataset("mnist1d", n_train=n_train)


SPEC = {"name": "mlp", "in_features": 40, "widths": [100] * 5, "out_features": 10,
        "activation": "relu"}


def _lrs(m: int) -> list[float]:
    return [0.1 * 0.8 ** (i % 8) for i in range(m)]


def _members(m: int, widths: list[int], seeds: list[int] | None = None):
    from trainlab.engine.pack import build_members

    spec = {**SPEC, "widths": widths}
    return build_members(spec, [{"seed": s} for s in (seeds or range(m))])


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_sequential(ds, m: int, steps: int, widths: list[int], device: str,
                    batch: int = 128) -> float:
    from trainlab.train import Trainer

    models = _members(m, widths)
    t = time.perf_counter()
    for s, (model, lr) in enumerate(zip(models, _lrs(m))):
        Trainer(model, optimizer="sgd", lr=lr, seed=s, device=device,
                progress=False).fit(ds, steps=steps, batch_size=batch)
    _sync(device)
    return time.perf_counter() - t


def time_pack(ds, m: int, steps: int, widths: list[int], device: str,
              batch: int = 128, one_seed: bool = False) -> float:
    """``one_seed``: every member has seed 0 (an lr sweep: one init, one batch order), so the
    batch is drawn once and the first layer is one GEMM for all members."""
    from trainlab.train import Pack, PackTrainer

    seeds = [0] * m if one_seed else list(range(m))
    pack = Pack(_members(m, widths, seeds))
    tr = PackTrainer(pack, optimizer="sgd", lr=_lrs(m), seeds=seeds, device=device,
                     progress=False)
    t = time.perf_counter()
    tr.fit(ds, steps=steps, batch_size=batch)
    _sync(device)
    return time.perf_counter() - t


def time_vmap(ds, m: int, steps: int, widths: list[int], device: str) -> float:
    """The plain torch.func ensemble: stacked state, vmap(functional_call), torch.optim."""
    import copy

    import torch.nn.functional as F
    from torch.func import functional_call, stack_module_state, vmap

    models = [mm.to(device) for mm in _members(m, widths)]
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    opt = torch.optim.SGD(list(params.values()), lr=0.05)
    x, y = ds.x_train.to(device), ds.y_train.to(device)
    g = torch.Generator(device=device).manual_seed(0)

    def f(p, b, xb):
        return functional_call(base, (p, b), (xb,))

    xt, yt = ds.x_test.to(device), ds.y_test.to(device)
    per_epoch = -(-x.shape[0] // 128)

    def evaluate() -> list[float]:  # as the Trainer and the pack: test loss and accuracy
        with torch.no_grad():
            out = vmap(f, in_dims=(0, 0, None))(params, buffers, xt)
            acc = (out.argmax(-1) == yt).double().mean(1)
            loss = F.cross_entropy(out.reshape(-1, out.shape[-1]), yt.repeat(m))
            return torch.cat([acc, loss.reshape(1).double()]).tolist()

    t = time.perf_counter()
    for step in range(1, steps + 1):
        idx = torch.randint(0, x.shape[0], (m, 128), generator=g, device=device)
        out = vmap(f, randomness="different")(params, buffers, x[idx])
        loss = F.cross_entropy(out.reshape(-1, out.shape[-1]), y[idx].reshape(-1)) * m
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % per_epoch == 0 or step == steps:
            evaluate()
    _sync(device)
    return time.perf_counter() - t


def matmul_gflops(device: str, n: int = 2048, reps: int = 10) -> float:
    """The machine's matmul roofline: GFLOP/s of an ``n x n`` float32 ``torch.mm``
    (``2 n^3`` FLOPs each), best of ``reps`` after a warm-up."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    torch.mm(a, b)
    _sync(device)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def step_flops(m: int, batch: int, sizes: list[int]) -> int:
    """Matmul FLOPs of one training step of ``m`` MLPs with layer sizes ``sizes``: per
    ``Linear(i, o)`` on ``batch`` rows, ``2·batch·i·o`` forward, as much for the weight
    gradient and as much for the input gradient (none for the first layer: nothing needs the
    input's gradient)."""
    total = 0
    for k, (i, o) in enumerate(zip(sizes[:-1], sizes[1:])):
        total += 2 * batch * i * o * (2 if k == 0 else 3)
    return m * total


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def peak_of_pack(m: int, steps: int, widths: list[int], n_train: int | None) -> int:
    """Bytes of resident memory a pack of ``m`` adds at its peak, in this process: the
    high-water mark is reset (Linux ``/proc/self/clear_refs``) once the data is loaded and a
    warm-up pack has run, then read after training."""
    ds = _data(n_train)
    time_pack(ds, 1, 2, widths, "cpu")  # libraries and allocator caches: not the pack's
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current VmRSS
    before = _status_kib("VmRSS")
    time_pack(ds, m, steps, widths, "cpu")
    return (_status_kib("VmHWM") - before) * 1024


def _peak_child(m: int, steps: int, widths: list[int], n_train: int | None) -> int:
    """:func:`peak_of_pack` in a fresh process (no memory of earlier measurements)."""
    code = (
        "import sys, json, torch\n"
        f"sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})\n"
        "import sweep_speed as S\n"
        f"torch.set_num_threads({torch.get_num_threads()})\n"
        f"print(json.dumps(S.peak_of_pack({m}, {steps}, {widths!r}, {n_train!r})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=os.environ.copy())
    return int(json.loads(out.stdout.strip().splitlines()[-1]))


def bytes_per_member(ms: list[int], steps: int, widths: list[int], n_train: int | None,
                     device: str) -> tuple[float, dict[int, int]]:
    peaks: dict[int, int] = {}
    if device.startswith("cuda"):
        ds = _data(n_train)
        for m in ms:
            torch.cuda.reset_peak_memory_stats()
            time_pack(ds, m, steps, widths, device)
            peaks[m] = torch.cuda.max_memory_allocated()
    else:
        for m in ms:
            peaks[m] = _peak_child(m, steps, widths, n_train)
    xs, ys = list(peaks), list(peaks.values())
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((a - mx) * (b - my) for a, b in zip(xs, ys)) / max(
        sum((a - mx) ** 2 for a in xs), 1e-12)
    return slope, peaks


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="tiny sizes (512 examples, width 16, 6 steps, M up to 16): checks it runs")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--members", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory part")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        n_train, widths, steps, members, scale = 512, [16] * 5, 6, 4, [1, 4, 16]
    else:
        n_train, widths, steps, members, scale = None, [100] * 5, args.steps, args.members, \
            [1, 4, 16, 64, 256]
    ds = _data(n_train)
    dev = args.device
    print(f"sweep_speed: {members} members of mlp(40, {widths}, 10), batch 128, {steps} "
          f"steps, {torch.get_num_threads()} threads, device {dev}, torch {torch.__version__}")
    time_pack(ds, 2, 2, widths, dev)  # warm-up: imports, allocator
    seq = time_sequential(ds, members, steps, widths, dev)
    pack = time_pack(ds, members, steps, widths, dev)
    vm = time_vmap(ds, members, steps, widths, dev)
    one_t = time_sequential(ds, 1, steps, widths, dev)
    one_p = time_pack(ds, 1, steps, widths, dev)
    rows = [
        ("sequential Trainer", seq, seq / pack),
        ("plain torch.func vmap ensemble", vm, vm / pack),
        ("pack", pack, 1.0),
    ]
    print(f"\n{members} members, {steps} steps each:")
    print(f"  {'':32s} {'seconds':>9s} {'pack speed-up':>14s}")
    for name, t, r in rows:
        print(f"  {name:32s} {t:9.3f} {r:13.2f}x")
    print(f"  pack / sequential: {seq / pack:.2f}x faster; "
          f"pack / vmap: {vm / pack:.2f}x faster")
    print(f"\npack of 1 vs plain Trainer: {one_p:.3f} s vs {one_t:.3f} s = "
          f"{one_p / one_t:.3f}x (target <= 1.10x)")
    roof = matmul_gflops(dev)
    achieved = step_flops(members, 128, [40, *widths, 10]) * steps / pack / 1e9
    print(f"\nroofline: a 2048² torch.mm runs at {roof:.1f} GFLOP/s; the pack's training "
          f"matmuls (forward + backward) reach {achieved:.1f} GFLOP/s = "
          f"{achieved / roof:.0%} of it (target >= 60%)")
    shared = time_pack(ds, members, steps, widths, dev, one_seed=True)
    achieved_sh = step_flops(members, 128, [40, *widths, 10]) * steps / shared / 1e9
    print(f"  the same pack as an lr sweep (one seed: shared batches, the first layer one "
          f"GEMM): {shared:.3f} s, {achieved_sh:.1f} GFLOP/s = {achieved_sh / roof:.0%}")
    small = [8] * 3 if args.quick else [32] * 3
    seq_s = time_sequential(ds, members, steps, small, dev, batch=32)
    pack_s = time_pack(ds, members, steps, small, dev, batch=32)
    print(f"\noverhead-bound workload, {members} x mlp(40, {small}, 10), batch 32, {steps} "
          f"steps: sequential {seq_s:.3f} s, pack {pack_s:.3f} s = {seq_s / pack_s:.1f}x "
          f"(target >= 25x); the pack's step: {pack_s / steps * 1e3:.2f} ms")
    print("\nscaling (pack):")
    print(f"  {'M':>5s} {'seconds':>9s} {'ms / member-step':>17s} {'vs M=1':>8s}")
    base = None
    for m in scale:
        t = time_pack(ds, m, steps, widths, dev)
        per = t / (m * steps) * 1e3
        base = base or per
        print(f"  {m:5d} {t:9.3f} {per:17.4f} {base / per:7.2f}x")
    if not args.no_memory:
        slope, peaks = bytes_per_member(scale if not args.quick else [1, 4, 16], steps,
                                        widths, n_train, dev)
        print("\npeak memory added by the pack (resident, above the loaded data):")
        for m, b in peaks.items():
            print(f"  M={m:4d}: {b / 2**20:9.2f} MiB")
        print(f"  least-squares slope: {slope / 2**10:.1f} KiB per member")
    return 0


if __name__ == "__main__":
    sys.exit(main())
