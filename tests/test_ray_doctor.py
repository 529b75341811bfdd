"""`llmops-magics doctor` on Ray: installed or not, and whether the address set answers.

Real sockets stand in for a cluster's port (the probe is a bounded TCP connect, never a
`ray.init`); the absence of Ray is a real failed import in a fresh interpreter.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from llmops_magics import config
from llmops_magics.core.doctor import RAY_PROBE_S, check_ray


@pytest.fixture
def listening():
    """A port where something listens, as a cluster's GCS or Ray Client port would."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    yield server.getsockname()[1]
    server.close()


def _closed_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there any more
    return port


def test_without_an_address_a_local_ray_is_promised_with_this_machines_cpus():
    check = check_ray(config.configure(ray_address=""))
    assert check.status == "ok"
    assert f"({os.cpu_count()} CPUs)" in check.detail and "local Ray starts on demand" in check.detail
    assert check.detail.startswith("ray 2.")


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_an_address_where_something_listens_is_reachable(listening, scheme):
    check = check_ray(config.configure(ray_address=f"{scheme}127.0.0.1:{listening}"))
    assert check.status == "ok", check.line()
    assert f"127.0.0.1:{listening} reachable" in check.detail


def test_a_closed_port_is_not_reachable_and_says_what_to_do():
    port = _closed_port()
    check = check_ray(config.configure(ray_address=f"127.0.0.1:{port}"))
    assert check.status == "warn"
    assert f"no Ray cluster answers at 127.0.0.1:{port}" in check.detail
    assert "ray start --head" in check.fix and "ray_address" in check.fix


def test_a_silent_address_costs_the_probe_timeout_at_most():
    # A non-routable address: either refused at once or silent until the timeout.
    t0 = time.perf_counter()
    check = check_ray(config.configure(ray_address="10.255.255.1:6379"))
    assert time.perf_counter() - t0 < RAY_PROBE_S + 1.0
    assert check.status == "warn"


def test_auto_probes_the_cluster_ray_address_names(listening, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{listening}")
    check = check_ray(config.configure(ray_address="auto"))
    assert check.status == "ok" and f"auto (127.0.0.1:{listening})" in check.detail


def test_a_malformed_address_is_named():
    check = check_ray(config.configure(ray_address="head:port"))
    assert check.status == "warn" and "'head:port' is not host:port" in check.detail


def test_without_ray_doctor_says_how_to_install_it_and_does_not_fail():
    code = (
        "import sys; sys.modules['ray'] = None\n"
        "from llmops_magics.core.doctor import check_ray\n"
        "from llmops_magics.config import settings\n"
        "c = check_ray(settings()); print(c.status); print(c.line())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    status, line = out.stdout.splitlines()[:2]
    assert status == "ok"
    assert "not installed: pip install 'llmops-magics[ray]'" in line


def test_the_doctor_command_prints_the_ray_line():
    env = {**os.environ, "LLMOPS_RAY_ADDRESS": f"127.0.0.1:{_closed_port()}"}
    out = subprocess.run(
        [sys.executable, "-m", "llmops_magics.cli", "doctor"], capture_output=True, text=True, timeout=300, env=env
    )
    line = next(text for text in out.stdout.splitlines() if text.split()[1:2] == ["ray"])
    assert line.startswith("warn") and "no Ray cluster answers" in line and "-> start it" in line


def _extras_closure(project: dict, extras: set[str]) -> list[str]:
    """Every requirement `pip install .[extras]` asks for, self-references followed."""
    reqs, seen, todo = list(project["dependencies"]), set(), list(extras)
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for req in project["optional-dependencies"][extra]:
            if req.startswith(project["name"] + "["):
                todo += req.split("[", 1)[1].rstrip("]").split(",")
            else:
                reqs.append(req)
    return reqs


def test_binder_stays_on_the_kernel_path_while_make_test_installs_ray():
    import re
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")
    root = Path(__file__).resolve().parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    post = (root / "binder" / "postBuild").read_text() + (root / "binder" / "requirements.txt").read_text()
    binder_extras = {e for group in re.findall(r'"\.\[([\w,]+)\]"', post) for e in group.split(",")}
    assert binder_extras, "postBuild installs the package with its extras"
    assert not [r for r in _extras_closure(project, binder_extras) if r.startswith(("ray", "pylance", "lance-ray"))]
    tested = _extras_closure(project, {"test"})
    assert "ray[data]==2.60.0" in tested and "pylance==13.0.0" in tested
    assert not [r for r in tested if r.startswith("lance-ray")], "lance-ray pulls pylance 14"
