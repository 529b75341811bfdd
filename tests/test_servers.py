"""The test helper every server process goes through (``servers.ServerProcess``): it
gives up in time with the end of the log, and a stopped server leaves no process behind,
not even one that ignores SIGTERM or left the process group (as Jupyter kernels do)."""

from __future__ import annotations

import sys
import textwrap
import time

import psutil
import pytest
import requests
from servers import ServerDidNotStart, ServerProcess  # tests/ is on sys.path (conftest.py)

# A server with two children: one in its process group, one in a session of its own.
TOY_SERVER = textwrap.dedent(
    """
    import http.server, signal, subprocess, sys
    port, pids, stubborn = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
    if stubborn:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the children inherit it
    sleeper = [sys.executable, "-c", "import time; time.sleep(600)"]
    in_group = subprocess.Popen(sleeper)
    own_session = subprocess.Popen(sleeper, start_new_session=True)
    with open(pids, "w") as f:
        f.write(f"{in_group.pid} {own_session.pid}")
    print("serving", flush=True)
    http.server.ThreadingHTTPServer(("127.0.0.1", port), http.server.SimpleHTTPRequestHandler).serve_forever()
    """
)


def _gone(pid: int) -> bool:
    # Killed orphans belong to PID 1, which may be slow to reap them: a zombie is gone.
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("stubborn", [False, True], ids=["polite", "ignores-sigterm"])
def test_a_stopped_server_leaves_no_process(tmp_path, stubborn):
    srv = ServerProcess("toy server", tmp_path / "toy.log")
    cmd = [sys.executable, "-c", TOY_SERVER, str(srv.port), str(tmp_path / "pids"), "1" if stubborn else "0"]
    srv.start(cmd, ready_url=srv.base_url, cwd=tmp_path, timeout_s=60, poll_s=0.1)
    pids = [srv.proc.pid, *map(int, (tmp_path / "pids").read_text().split())]
    assert not any(_gone(p) for p in pids)

    t0 = time.monotonic()
    srv.stop(grace_s=1)
    assert not srv.running and time.monotonic() - t0 < 10
    deadline = time.monotonic() + 10
    while not all(_gone(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [p for p in pids if not _gone(p)] == []
    with pytest.raises(requests.ConnectionError):
        requests.get(srv.base_url, timeout=2)
    assert "serving" in srv.log_tail()
    srv.stop()  # twice is fine


def test_a_server_that_exits_says_so_with_the_end_of_its_log(tmp_path):
    srv = ServerProcess("toy server", tmp_path / "toy.log")
    crash = [sys.executable, "-c", "import sys; print('no such model: nope'); sys.exit(3)"]
    with pytest.raises(ServerDidNotStart, match=r"toy server exited with code 3: end of .*toy\.log:\n.*no such model"):
        srv.start(crash, ready_url=srv.base_url, timeout_s=60, poll_s=0.1)
    assert not srv.running


def test_a_silent_server_is_given_up_on_in_time_and_stopped(tmp_path):
    srv = ServerProcess("toy server", tmp_path / "toy.log")
    silent = [sys.executable, "-c", "import time; time.sleep(600)"]
    t0 = time.monotonic()
    with pytest.raises(ServerDidNotStart, match=r"toy server did not answer at http://127\.0\.0\.1:\d+/ready in 1 s"):
        srv.start(silent, ready_url=f"{srv.base_url}/ready?token=secret", timeout_s=1, poll_s=0.1)
    assert time.monotonic() - t0 < 30 and not srv.running
