"""One real Ray head for the whole test session (issue 21).

``ray_address`` starts ``ray start --head --block`` on 127.0.0.1 with 2 CPUs, its own
ports and its own temp dir, in its own process group (a :class:`servers.ServerProcess`),
and yields ``"127.0.0.1:PORT"``. Tests attach with ``ray_cluster.connect(ray_address,
cfg=...)``; driver subprocesses attach with the same address. At session end the whole
group is killed: never ``ray stop``, which would stop every Ray on the machine.

Import it in a test file with ``from ray_helpers import ray_address  # noqa: F401``.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import time
from pathlib import Path

import pytest
from servers import ServerDidNotStart, ServerProcess, free_port

# Ray puts unix sockets under its temp dir (sockets/plasma_store, raylet): their paths
# may not pass ~107 characters, so the dir is short and outside pytest's deep tmp tree.
_TEMP_ROOT = Path("/tmp")
_READY_LINE = "Ray runtime started"
_OBJECT_STORE_BYTES = 512 << 20  # small: three engineers and an embedder share the machine


class RayHead(ServerProcess):
    """``ray start --head --block`` owned by the test session."""

    def __init__(self, log_path: Path, temp_dir: Path):
        super().__init__("ray head", log_path)
        self.temp_dir = temp_dir

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        ray = str(Path(sys.executable).with_name("ray"))
        # Every port of our own: another Ray on this machine keeps its defaults (10001, ...).
        return [
            ray,
            "start",
            "--head",
            "--block",
            "--num-cpus=2",
            "--node-ip-address=127.0.0.1",
            f"--port={self.port}",
            f"--ray-client-server-port={free_port()}",
            f"--node-manager-port={free_port()}",
            f"--object-manager-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}",
            f"--metrics-export-port={free_port()}",
            f"--dashboard-port={free_port()}",  # its minimal head process still binds one
            f"--object-store-memory={_OBJECT_STORE_BYTES}",
            f"--temp-dir={self.temp_dir}",
            "--include-dashboard=false",
            "--disable-usage-stats",
        ]

    def _wait_ready(self, url: str, timeout_s: float, poll_s: float) -> None:
        # No dashboard, so no HTTP to poll: ready once the head says so and its GCS port answers.
        deadline = time.monotonic() + timeout_s
        while True:
            code = self.proc.poll()
            if code is not None:
                self.stop()
                raise ServerDidNotStart(f"ray head exited with code {code}: {self._tail_for_error()}")
            if _READY_LINE in self.log_tail(200_000) and _answers(self.port):
                return
            if time.monotonic() > deadline:
                self.stop()
                raise ServerDidNotStart(f"ray head did not start in {timeout_s:g} s: {self._tail_for_error()}")
            time.sleep(poll_s)


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def start_head(log_dir: Path, *, timeout_s: float = 120, tries: int = 3) -> RayHead:
    """A running Ray head (2 CPUs) on loopback; call :func:`stop_head` when done.

    Ray gives its raylet a fixed 30 s to register; on a loaded machine (two cores shared
    with other test runs) that can pass, so a failed start is tried again on new ports.
    """
    temp_dir = _TEMP_ROOT / f"llmops-ray-{os.getpid()}"
    head = RayHead(Path(log_dir) / "ray-head.log", temp_dir)
    # Ray 2.60 turns token authentication on for a new head; a loopback test head needs none.
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled", HF_HUB_OFFLINE="1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.pop("RAY_ADDRESS", None)
    for attempt in range(1, tries + 1):
        shutil.rmtree(temp_dir, ignore_errors=True)
        temp_dir.mkdir(parents=True)
        head.port = free_port()
        try:
            return head.start(head.command(), ready_url=head.address, env=env, timeout_s=timeout_s, poll_s=0.5)
        except ServerDidNotStart:
            if attempt == tries:
                shutil.rmtree(temp_dir, ignore_errors=True)
                raise
    raise AssertionError("unreachable")


def stop_head(head: RayHead) -> None:
    """Kill the head's whole process group (raylet, GCS, workers) and remove its temp dir."""
    head.stop(grace_s=5)
    shutil.rmtree(head.temp_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_address(tmp_path_factory):
    """``"127.0.0.1:PORT"`` of a Ray head (2 CPUs) this session started and will kill."""
    from llmops_magics.backends import ray_cluster

    head = start_head(tmp_path_factory.mktemp("ray-head"))
    try:
        yield head.address
    finally:
        ray_cluster.shutdown()  # this process's driver first, then the cluster under it
        stop_head(head)


def cluster_processes(address: str, title: str) -> list:
    """The processes of the test head at ``address`` whose title holds ``title``
    (``MapBatches(EmbedderActor)``): only this session's Ray, never another on the machine."""
    import psutil

    port = address.rsplit(":", 1)[-1]
    heads = [
        p
        for p in psutil.process_iter(["cmdline"])
        if f"--port={port}" in (p.info["cmdline"] or []) and "--head" in (p.info["cmdline"] or [])
    ]
    found = []
    for head in heads:
        try:
            found += [c for c in head.children(recursive=True) if title in " ".join(c.cmdline())]
        except psutil.Error:  # gone meanwhile
            continue
    return found
