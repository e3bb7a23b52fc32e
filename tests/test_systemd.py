"""The systemd unit verifies, scores as well hardened, and the install scripts are sound (dry runs only)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "systemd" / "ser-edge.service"
EXEC_PYTHON = "/opt/ser-edge/venv/bin/python"
MAX_EXPOSURE = 2.5

needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")


def unit_settings() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


@needs_analyze
def test_unit_passes_systemd_analyze_verify(tmp_path):
    # verify insists that ExecStart's program exists; the installed venv does not exist here,
    # so the copy points at this interpreter. Everything else is checked as shipped.
    unit = tmp_path / "ser-edge.service"
    unit.write_text(UNIT.read_text().replace(EXEC_PYTHON, str(Path(sys.executable).resolve())))
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    problems = [line for line in proc.stderr.splitlines() if "ser-edge" in line]
    assert problems == [], proc.stderr


@needs_analyze
def test_security_exposure_is_at_most_2_5():
    proc = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(UNIT)], capture_output=True, text=True, timeout=60
    )
    match = re.search(r"Overall exposure level for ser-edge\.service: ([\d.]+)", proc.stdout)
    assert match, proc.stdout + proc.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, proc.stdout


def test_unit_runs_the_service_as_a_watched_notify_service_of_its_own_user():
    s = unit_settings()
    assert s["Type"] == ["notify"] and s["Restart"] == ["on-failure"]
    assert s["ExecStart"] == [f"{EXEC_PYTHON} -m edge run --config /etc/ser-edge/config.toml"]
    assert int(s["WatchdogSec"][0]) > 0
    assert s["User"] == ["ser-edge"] and s["SupplementaryGroups"] == ["audio gpio"]
    assert s["StateDirectory"] == ["ser-edge"]
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "CapabilityBoundingSet": "",
        "DevicePolicy": "closed",
    }.items():
        assert s[key] == [value], key
    assert s["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]
    assert s["SystemCallFilter"][0] == "@system-service"
    assert all(d.startswith(("char-alsa", "char-gpiochip", "/dev/gpiomem")) for d in s["DeviceAllow"])
    assert s["MemoryMax"] and s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]


@pytest.mark.parametrize("script", ["install.sh", "uninstall.sh"])
def test_scripts_parse_and_dry_run_changes_nothing(script):
    path = ROOT / "systemd" / script
    assert subprocess.run(["sh", "-n", str(path)], capture_output=True).returncode == 0
    proc = subprocess.run(["sh", str(path), "--dry-run"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    if script == "install.sh":
        out = proc.stdout
        for step in (
            "-m venv /opt/ser-edge/venv",
            "pip install --quiet -r",
            "requirements-edge.txt",
            "/etc/ser-edge/config.toml",
            "install -d -m 0750 -o ser-edge -g ser-edge /var/lib/ser-edge",
            "systemctl enable ser-edge.service",
        ):
            assert step in out, step


def test_scripts_refuse_unknown_options():
    for script in ("install.sh", "uninstall.sh"):
        proc = subprocess.run(["sh", str(ROOT / "systemd" / script), "--bogus"], capture_output=True, text=True)
        assert proc.returncode == 2 and "unknown option --bogus" in proc.stderr


def test_the_units_memory_policy_lets_the_web_page_decode_an_upload(tmp_path):
    """MemoryDenyWriteExecute (PR_SET_MDWE since Linux 6.3) refuses the cffi callbacks soundfile decodes uploads with."""
    mdwe = unit_settings().get("MemoryDenyWriteExecute", ["no"])[-1] == "yes"
    script = textwrap.dedent(
        f"""
        import ctypes, io, sys, wave
        from edge.audio import decode_audio
        buf = io.BytesIO()  # written without soundfile: its first callback must come after the policy
        with wave.open(buf, "wb") as w:
            w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000), w.writeframes((4096).to_bytes(2, "little") * 16000)
        buf.seek(0)
        if {mdwe}:  # as systemd applies MemoryDenyWriteExecute=yes
            if ctypes.CDLL(None).prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
                sys.exit(3)
        decode_audio(buf, "upload.wav")
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT)
    if proc.returncode == 3:
        pytest.skip("this kernel has no PR_SET_MDWE to stand in for MemoryDenyWriteExecute")
    assert proc.returncode == 0, proc.stderr[-2000:]
