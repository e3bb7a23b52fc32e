"""The Makefile's checks before anything is installed: which Debian packages `make test` installs (the
list .ci/run installs too), when it may, and the one sentence it says otherwise; and which Python it refuses."""

from __future__ import annotations

import os
import re
import subprocess

import pytest
from conftest import ROOT, find_python

PACKAGES = [line.split("#", 1)[0].strip() for line in (ROOT / ".ci/debian-packages.txt").read_text().splitlines()]
PACKAGES = [p for p in PACKAGES if p]


def fake_system(tmp_path, uid: int, sudo_works: bool, installed=()):
    """A PATH whose dpkg, id, sudo and apt-get stand in for Debian's; apt-get logs its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "apt.log"
    scripts = {
        "dpkg": 'case " {} " in *" $2 "*) exit 0;; esac; exit 1'.format(" ".join(installed)),
        "id": f"echo {uid}",
        "sudo": ('[ "$1" = -n ] && shift; ' + ('"$@"' if sudo_works else "exit 1")),
        "apt-get": f'echo "$*" >> {log}',
    }
    for name, body in scripts.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    return env, log


def make(target: str, env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-s", "-C", str(ROOT), target, *args], capture_output=True, text=True, env=env, timeout=60)


def test_ci_and_make_test_read_the_same_package_list():
    assert "python3-venv" in PACKAGES and "libportaudio2" in PACKAGES and "gcc" not in PACKAGES
    assert ".ci/debian-packages.txt" in (ROOT / ".ci/run").read_text() and ".ci/debian-packages.txt" in (ROOT / "Makefile").read_text()


def test_as_root_the_missing_packages_are_installed(tmp_path):
    env, log = fake_system(tmp_path, uid=0, sudo_works=False, installed=("make", "python3"))
    proc = make("system-packages", env)
    assert proc.returncode == 0, proc.stderr
    update, install = log.read_text().splitlines()
    assert update == "update -q"
    assert install.split()[-len(PACKAGES) + 2 :] == [p for p in PACKAGES if p not in ("make", "python3")]


def test_with_sudo_they_are_installed_through_it(tmp_path):
    env, log = fake_system(tmp_path, uid=1000, sudo_works=True, installed=PACKAGES[:-1])
    proc = make("system-packages", env)
    assert proc.returncode == 0, proc.stderr
    assert log.read_text().splitlines()[-1].endswith(f"--no-install-recommends {PACKAGES[-1]}")


def test_without_root_or_sudo_one_sentence_names_them(tmp_path):
    env, log = fake_system(tmp_path, uid=1000, sudo_works=False, installed=PACKAGES[2:])
    proc = make("system-packages", env)
    assert proc.returncode != 0 and not log.exists()
    (sentence,) = [line for line in proc.stderr.splitlines() if not line.startswith(("make:", "make["))]
    missing = " ".join(PACKAGES[:2])
    assert (
        sentence
        == f"make test needs these Debian packages: {missing}; install them with: sudo apt-get install {missing} (or run make test as root)"
    )


def test_nothing_missing_installs_nothing(tmp_path):
    env, log = fake_system(tmp_path, uid=1000, sudo_works=False, installed=PACKAGES)
    assert make("system-packages", env).returncode == 0 and not log.exists()


def test_python_310_is_refused_in_one_sentence():
    python = find_python("3.10")
    if python is None:
        pytest.skip("Python 3.10 is not installed on this machine")
    proc = make("check-python", dict(os.environ), f"PYTHON={python}")
    assert proc.returncode != 0
    assert re.fullmatch(
        r"ser-edge needs Python 3\.11 or newer and \S+ is 3\.10\.\d+: install python3\.11 or newer and run make PYTHON=python3\.11",
        proc.stderr.splitlines()[0],
    )
