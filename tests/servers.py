"""Real processes for tests.

- :class:`ServerProcess`: the one way a test starts a long-running server: a free port,
  its own process group, its output in a log file, a bounded wait until a URL answers
  (the end of the log in the error when it does not), and a stop that leaves no child.
- :class:`MlflowServer`: an ``mlflow server`` on loopback that can be stopped, frozen and
  restarted on the same port and store (for outage tests).
- :class:`CutOffProxy`: a proxy in front of a server that can fall silent or cut off midway.
- :class:`Kernel`: a real Jupyter kernel driven cell by cell.

The JupyterLab server of the browser tests (``ui/lab_harness.py``) and the ``vllm serve``
of ``test_backends.py`` are :class:`ServerProcess` too.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import psutil
import requests


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerDidNotStart(RuntimeError):
    """The server exited or stayed silent while starting; the message ends with its log."""


class ServerProcess:
    """A server process owned by a test, on ``127.0.0.1:port``.

    The process leads a new session, so signals reach its whole process group (workers,
    engine processes) and never the test runner. Its stdout and stderr are appended to
    ``log_path``, which survives restarts on the same port.

    Parameters
    ----------
    name : str
        How errors name it (``"mlflow server"``).
    log_path : Path
        The file its output is appended to.
    port : int, optional
        The port the command will listen on; a free one when not given. It stays the
        same across :meth:`stop` and :meth:`start`.

    Examples
    --------
    >>> srv = ServerProcess("http.server", tmp_path / "http.log")
    >>> srv = srv.start([sys.executable, "-m", "http.server", str(srv.port)], ready_url=srv.base_url)
    >>> srv.stop()
    """

    def __init__(self, name: str, log_path: Path, *, port: int | None = None):
        self.name = name
        self.log_path = Path(log_path)
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        """True from :meth:`start` until the process exits (a frozen one is running)."""
        return self.proc is not None and self.proc.poll() is None

    def start(
        self,
        cmd: Sequence[str],
        *,
        ready_url: str,
        env: dict | None = None,
        cwd: Path | None = None,
        timeout_s: float = 120,
        poll_s: float = 0.5,
    ) -> ServerProcess:
        """Run ``cmd`` and wait until ``ready_url`` answers 200.

        Parameters
        ----------
        cmd : sequence of str
            The command; it must listen on :attr:`port`.
        ready_url : str
            Polled with GET until it answers 200.
        env, cwd : optional
            The process's environment (default: this one) and working directory.
        timeout_s : float
            How long it may take to answer.
        poll_s : float
            The pause between two polls.

        Returns
        -------
        ServerProcess
            ``self``, answering.

        Raises
        ------
        ServerDidNotStart
            It exited, or did not answer in ``timeout_s``; it is stopped and the message
            ends with the tail of its log.
        """
        if self.running:
            raise RuntimeError(f"{self.name} is already running (pid {self.proc.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                list(cmd),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        self._wait_ready(ready_url, timeout_s, poll_s)
        return self

    def _wait_ready(self, url: str, timeout_s: float, poll_s: float) -> None:
        shown = url.split("?")[0]  # a query may hold a token
        deadline = time.monotonic() + timeout_s
        while True:
            code = self.proc.poll()
            if code is not None:
                self.stop()  # its children may outlive it
                raise ServerDidNotStart(f"{self.name} exited with code {code}: {self._tail_for_error()}")
            left = deadline - time.monotonic()
            if left <= 0:
                self.stop()
                raise ServerDidNotStart(
                    f"{self.name} did not answer at {shown} in {timeout_s:g} s: {self._tail_for_error()}"
                )
            try:
                if requests.get(url, timeout=min(2.0, left)).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))

    def log_tail(self, n: int = 3000) -> str:
        """The last ``n`` characters of its log ("" before it ever started)."""
        return self.log_path.read_text(errors="replace")[-n:] if self.log_path.exists() else ""

    def _tail_for_error(self) -> str:
        return f"end of {self.log_path}:\n{self.log_tail()}"

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` to the whole process group (no-op once it has been stopped)."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def stop(self, grace_s: float = 20, *, ask: Callable[[], object] | None = None) -> None:
        """End it and everything it started; safe to call twice.

        Parameters
        ----------
        grace_s : float
            How long each polite step may take before the next, harder one.
        ask : callable, optional
            A polite request to end (an HTTP shutdown call), tried before SIGTERM; its
            errors are ignored.

        Notes
        -----
        In order: ``ask``, then SIGCONT + SIGTERM to the group (a frozen process cannot act
        on SIGTERM), then SIGKILL to what is left of the group. Descendants that left the
        group (Jupyter kernels start their own sessions) are noted before anything is sent
        and get SIGKILL if they are still there at the end.
        """
        if self.proc is None:
            return
        strays = self._descendants()
        if ask is not None and self.running:
            try:
                ask()
            except Exception:  # not answering: on to SIGTERM without waiting
                pass
            else:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(grace_s)
        if self.running:
            self.send_signal(signal.SIGCONT)
            self.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(grace_s)
        self._finish(strays)

    def kill(self) -> None:
        """SIGKILL now, the whole group and every descendant; the port refuses at once."""
        if self.proc is not None:
            self._finish(self._descendants())

    def _finish(self, strays: list[psutil.Process]) -> None:
        # The group outlives its leader when a child ignores SIGTERM: sweep it.
        self.send_signal(signal.SIGKILL)
        self.proc.wait()
        for child in strays:
            # psutil refuses to signal a PID that now belongs to another process.
            with contextlib.suppress(psutil.Error):
                child.kill()
        self.proc = None

    def _descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:  # already gone: its group, if any, is swept by pgid
            return []


class MlflowServer:
    """``mlflow server`` with a sqlite store and served artifacts under ``root``; its log
    is ``root/server.log`` (appended across restarts)."""

    def __init__(self, root: Path, port: int | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.process = ServerProcess("mlflow server", self.root / "server.log", port=port)

    @property
    def port(self) -> int:
        return self.process.port

    @property
    def uri(self) -> str:
        return self.process.base_url

    @property
    def running(self) -> bool:
        """True while the process lives, frozen or not."""
        return self.process.running

    def start(self, timeout_s: float = 120) -> MlflowServer:
        """Start it (again: same port, same store) and wait until ``/health`` answers."""
        cmd = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{self.root / 'mlflow.db'}",
            "--artifacts-destination",
            str(self.root / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]
        self.process.start(cmd, ready_url=f"{self.uri}/health", timeout_s=timeout_s)
        return self

    def freeze(self) -> None:
        """SIGSTOP: the port still accepts connections (the kernel queues them), nothing answers."""
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL: connections are refused until :meth:`start` again (same port, same store)."""
        self.process.kill()

    def stop(self) -> None:
        self.process.stop()


class CutOffProxy:
    """An HTTP proxy in front of a server. It stops answering right after a request whose
    path ends with ``cut_after`` was answered (a server going away in the middle of a
    sequence of calls), or at once with :meth:`silence` (it accepts and never answers);
    :meth:`restore` lets requests through again."""

    def __init__(self, upstream: str, *, cut_after: str = "\0never"):
        target = urlparse(upstream)
        proxy = self
        self.cut = False
        self.cut_after = cut_after
        self.silent = threading.Event()
        self.awake = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def handle(self):
                try:
                    super().handle()
                except OSError:  # the client gave up on a held request: nothing to answer
                    pass

            def _forward(self):
                if proxy.silent.is_set():
                    proxy.awake.wait()  # hold the request without a word until restored
                    self.close_connection = True
                    return
                if proxy.cut:
                    self.close_connection = True
                    self.connection.close()  # no answer at all: a dead server
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                except OSError:  # the server behind is down: so is the proxy, to its client
                    self.close_connection = True
                    return
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()
                if self.path.split("?")[0].endswith(proxy.cut_after):
                    proxy.cut = True

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def silence(self) -> None:
        self.awake.clear()
        self.silent.set()

    def restore(self) -> None:
        self.cut = False
        self.cut_after = "\0never"
        self.silent.clear()
        self.awake.set()

    def close(self) -> None:
        self.restore()
        self.server.shutdown()
        self.server.server_close()


class Kernel:
    """A real ipykernel; ``run`` sends one cell (with a cell id, as JupyterLab does)."""

    def __init__(self, env: dict, cwd: Path):
        from jupyter_client import KernelManager

        self.km = KernelManager(kernel_name="python3")
        self.km.start_kernel(env=env, cwd=str(cwd))
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=120)

    def run(self, code: str, cell_id: str | None = None, timeout: float = 300):
        content = {
            "code": code,
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": False,
        }
        msg = self.kc.session.msg("execute_request", content, metadata={"cellId": cell_id} if cell_id else {})
        self.kc.shell_channel.send(msg)
        msg_id = msg["header"]["msg_id"]
        outputs = []
        while True:
            m = self.kc.get_iopub_msg(timeout=timeout)
            if m["parent_header"].get("msg_id") != msg_id:
                continue
            if m["msg_type"] in ("display_data", "execute_result", "stream", "error"):
                outputs.append({"type": m["msg_type"], **m["content"]})
            elif m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
                break
        while True:
            reply = self.kc.get_shell_msg(timeout=timeout)
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply["content"], outputs

    def text(self, code: str, cell_id: str | None = None) -> str:
        reply, outputs = self.run(code, cell_id)
        parts = [o.get("text") or o.get("data", {}).get("text/plain", "") for o in outputs]
        parts += [f"{o['ename']}: {o['evalue']}" for o in outputs if o["type"] == "error"]
        return "\n".join(parts)

    def stop(self) -> None:
        self.kc.stop_channels()
        if self.km.is_alive():
            self.km.shutdown_kernel(now=True)
