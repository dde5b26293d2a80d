"""The `trainlab` command: dispatch, `list`, and the one-line error policy."""

import subprocess
import sys

import pytest

from trainlab.cli import main


def test_help_exits_zero(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    assert "list" in capsys.readouterr().out


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2


def test_list_all_families(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert out.strip()


def _listed_studies(text, n):
    lines = text.splitlines()
    assert f"study ({n})" in lines, text
    at = lines.index(f"study ({n})")
    return [ln.split()[0] for ln in lines[at + 1:at + 1 + n]]


def test_list_includes_every_study(capsys):
    import pkgutil

    import trainlab.studies

    modules = [i.name for i in pkgutil.iter_modules(trainlab.studies.__path__)
               if not i.name.startswith("_") and i.name not in ("base", "page")]
    assert len(modules) >= 30
    # a fresh process: no earlier test has imported the study modules for it
    r = subprocess.run([sys.executable, "-m", "trainlab", "list"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    listed = _listed_studies(r.stdout, len(modules))
    assert "activation_stats" in listed and "bn_rnn" in listed
    assert len(set(listed)) == len(modules)
    assert main(["list", "study"]) == 0  # that family only
    out = capsys.readouterr().out
    assert out.startswith(f"study ({len(modules)})\n")
    assert _listed_studies(out, len(modules)) == listed


def test_unknown_family_is_one_line(capsys):
    assert main(["list", "activatoin"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "Unknown family 'activatoin'" in err


def test_unknown_command_is_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        main(["lst"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("trainlab: error:") and err.count("\n") == 1


def test_installed_console_script_runs():
    r = subprocess.run([sys.executable, "-m", "trainlab", "list", "nope"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert r.stderr.startswith("trainlab: error: Unknown family 'nope'")


def test_closed_pipe_is_not_an_error():
    # `trainlab runs list | head -1`: the reader closes the pipe while the command still
    # writes. The child prints far more than a pipe buffer holds, so the write must fail.
    child = (
        "import sys, trainlab.cli as c, trainlab.cli.list_cmd as l\n"
        "l.run = lambda args: [print('x' * 99) for _ in range(100000)] and 0\n"
        "sys.exit(c.main(['list']))\n"
    )
    p = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    p.stdout.readline()
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 0, err
    assert "Broken pipe" not in err and "Traceback" not in err
