#!/usr/bin/env python3
"""Mutation testing of the modules a change touches, with mutmut (https://pypi.org/project/mutmut).

A mutant is a one-line bug (``<`` for ``<=``, ``+ eps`` dropped, a default changed); a test
suite that lets it pass ("survived") has no test for that line. Habit: before closing an
issue, run this on the modules you changed and put the score in the closing note; write a
test for each surviving mutant that matters.

    .venv/bin/python scripts/mutation.py                      # src/ files changed since HEAD~1
    .venv/bin/python scripts/mutation.py --base main          # ... since main
    .venv/bin/python scripts/mutation.py src/trainlab/losses.py --tests tests/test_losses.py

How: the working tree (tracked and untracked, not ignored files) is copied to a scratch folder,
so your checkout is never mutated; ``[tool.mutmut]`` there names the modules
(``only_mutate``) and the tests. mutmut first runs those tests once to learn which tests reach
which function, then runs, for each mutant, only the tests that reach it (in forked
processes). The tests default to the files ``tests/**/test_*<module>*.py`` and those that
import the module; give ``--tests`` to choose. Prints, per module, killed / (killed +
survived) and the surviving mutants; ``cd SCRATCH && mutmut show NAME`` shows one.

Needs mutmut 3 (``pip install -e '.[mutation]'``; installed on first use when missing) and a
system with fork (Linux, macOS).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MUTMUT = "mutmut>=3.8,<4"


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True,
                          text=True).stdout


def changed_modules(base: str) -> list[str]:
    """``src/**/*.py`` files that differ from ``base`` (committed or not), or are new."""
    names = set(_git("diff", "--name-only", base, "--", "src").split())
    names |= set(_git("ls-files", "--others", "--exclude-standard", "--", "src").split())
    return sorted(n for n in names if n.endswith(".py") and (ROOT / n).exists()
                  and not n.endswith("__init__.py"))


def default_tests(module: str) -> list[str]:
    """Test files named after the module, and test files that import it."""
    dotted = module.removeprefix("src/").removesuffix(".py").replace("/", ".")
    stem = Path(module).stem
    found = set()
    for t in (ROOT / "tests").rglob("test_*.py"):
        rel = str(t.relative_to(ROOT))
        if stem in t.stem or re.search(rf"\b{re.escape(dotted)}\b", t.read_text("utf-8")):
            found.add(rel)
    return sorted(found)


def _copy_tree(dest: Path) -> None:
    files = _git("ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0")
    for f in filter(None, files):
        src = ROOT / f
        if src.is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / f)


def _config(modules: list[str], tests: list[str]) -> str:
    q = ", ".join
    return (
        "\n[tool.mutmut]\n"
        f"only_mutate = [{q(repr(m) for m in modules)}]\n"
        'source_paths = ["src"]\n'
        f"tests_dir = [{q(repr(t) for t in tests)}]\n"
        'also_copy = ["tests"]\n'
    ).replace("'", '"')


def _ensure_mutmut() -> str:
    exe = Path(sys.executable).with_name("mutmut")
    if not exe.exists():
        print(f"installing {MUTMUT} into {sys.prefix} ...", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", MUTMUT], check=True)
    return str(exe)


def summarize(results: str, modules: list[str]) -> dict[str, Counter]:
    """Counts of each outcome per module, from ``mutmut results --all true``."""
    dotted = {m.removeprefix("src/").removesuffix(".py").replace("/", "."): m for m in modules}
    per: dict[str, Counter] = defaultdict(Counter)
    survivors: dict[str, list[str]] = defaultdict(list)
    for line in results.splitlines():
        name, _, status = line.strip().partition(": ")
        mod = name.split(".x", 1)[0].split(".x_", 1)[0]
        if mod in dotted:
            per[mod][status.strip()] += 1
            if status.strip() == "survived":
                survivors[mod].append(name)
    for mod, names in survivors.items():
        per[mod]["_survivors"] = names  # type: ignore[assignment]
    return per


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("modules", nargs="*", help="source files to mutate (default: changed ones)")
    ap.add_argument("--base", default="HEAD~1", help="git revision for 'changed' (HEAD~1)")
    ap.add_argument("--tests", nargs="+", help="test files to run (default: see above)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="mutants at once")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds for the whole run")
    ap.add_argument("--clean", action="store_true", help="delete the scratch folder at the end")
    args = ap.parse_args(argv)

    modules = args.modules or changed_modules(args.base)
    if not modules:
        print(f"no changed source files under src/ since {args.base}; name modules to mutate")
        return 0
    for m in modules:
        if not (ROOT / m).is_file() or not m.startswith("src/") or not m.endswith(".py"):
            print(f"mutation.py: error: {m!r} is not a .py file under src/", file=sys.stderr)
            return 2
    tests = args.tests or sorted({t for m in modules for t in default_tests(m)})
    if not tests:
        print(f"mutation.py: error: no tests found for {modules}; give --tests",
              file=sys.stderr)
        return 2
    mutmut = _ensure_mutmut()
    scratch = Path(tempfile.mkdtemp(prefix="trainlab-mutation-"))
    _copy_tree(scratch)
    with open(scratch / "pyproject.toml", "a", encoding="utf-8") as f:
        f.write(_config(modules, tests))
    print(f"mutating {', '.join(modules)}\n  tests: {' '.join(tests)}\n  in {scratch}",
          flush=True)
    env = {**os.environ, "MPLBACKEND": "Agg"}
    try:
        run = subprocess.run([mutmut, "run", "--max-children", str(args.jobs)], cwd=scratch,
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True, timeout=args.timeout)
        if run.returncode != 0:
            print(run.stderr[-3000:], file=sys.stderr)
            print("mutation.py: error: mutmut run failed (see above)", file=sys.stderr)
            return 1
    except subprocess.TimeoutExpired:
        print(f"mutation.py: the run passed --timeout={args.timeout}s; the counts below are "
              "partial", file=sys.stderr)
    res = subprocess.run([mutmut, "results", "--all", "true"], cwd=scratch, env=env,
                         capture_output=True, text=True).stdout
    per = summarize(res, modules)
    print(f"\n{'module':40s} {'killed':>7s} {'survived':>9s} {'no tests':>9s} {'score':>7s}")
    for mod in sorted(per):
        c = per[mod]
        killed = c["killed"] + c["timeout"]
        done = killed + c["survived"]
        score = f"{killed / done:.1%}" if done else "-"
        print(f"{mod:40s} {killed:7d} {c['survived']:9d} {c['no tests']:9d} {score:>7s}")
    for mod in sorted(per):
        names = per[mod].get("_survivors") or []
        if names:
            how = "" if args.clean else f"; `cd {scratch} && mutmut show NAME`"
            print(f"\nsurviving in {mod} ({len(names)}{how}):")
            for n in names[:25]:
                print(f"  {n}")
            if len(names) > 25:
                print(f"  ... and {len(names) - 25} more")
    if args.clean:
        shutil.rmtree(scratch, ignore_errors=True)
    else:
        print(f"\n(scratch folder kept for `mutmut show`: {scratch}; delete it when done)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
