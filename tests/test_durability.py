"""Nothing lost when a process dies or MLflow is down: real processes, real stores.

* A process SIGKILLed at random points while it creates the sqlite store: the next
  process (or kernel) in that folder works every time.
* A real ``mlflow server`` refused (killed) or silent (SIGSTOP, and a socket that never
  answers): every magic spends at most ``mlflow_timeout_s`` (10 s) on MLflow beyond its
  own work; answers, comparisons and reports are kept and written once MLflow is back,
  each exactly once; a run cut off midway is completed, never left RUNNING.
* Corrupt lineage spool lines of every shape: skipped, quarantined, counted; every
  other record shipped exactly once.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from servers import CutOffProxy, Kernel, MlflowServer  # noqa: E402

import llmops_magics  # noqa: E402
from llmops_magics import config  # noqa: E402
from llmops_magics.core import tracking  # noqa: E402
from llmops_magics.core.tracking import store as mlflow_store  # noqa: E402
from llmops_magics.errors import TrackingError  # noqa: E402

pytestmark = pytest.mark.slow
BUDGET_S = 10.0  # the default mlflow_timeout_s
SLACK_S = 3.0  # scheduling on a loaded 2-core machine


# ---------------------------------------------------------------- store creation


CREATOR = textwrap.dedent("""
    # Imports once, then forks one child per folder; each child creates the store there
    # the way a kernel's first MLflow call does. The test SIGKILLs children at random.
    import os, signal, sys
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
    from llmops_magics import config
    from llmops_magics.core import tracking
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children reap themselves
    print("ready", flush=True)
    for line in sys.stdin:
        folder = line.strip()
        pid = os.fork()
        if pid == 0:
            cfg = config.configure(home=folder, tracking_uri="")
            tracking.client(cfg)
            os._exit(0)
        print(pid, flush=True)
""")

VERIFY = textwrap.dedent("""
    # The next process in each folder: open the store, write a run, read it back.
    import json, sys
    from llmops_magics import config
    from llmops_magics.core import tracking
    ok = []
    for folder in sys.argv[1:]:
        cfg = config.configure(home=folder, tracking_uri="")
        run = tracking.log_run(run_name="after-kill", tags={}, params={"p": 1}, metrics={"m": 2.0}, cfg=cfg)
        got = tracking.client(cfg).get_run(run).data.metrics["m"]
        ok.append(folder if got == 2.0 else None)
    print(json.dumps(ok))
""")


def test_every_kernel_works_after_a_kill_during_store_creation(tmp_path):
    creator = subprocess.Popen(
        [sys.executable, "-c", CREATOR],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "LLMOPS_LINEAGE": "off"},
    )
    try:
        assert creator.stdout.readline().strip() == "ready"
        # How long a whole creation takes here, so the kills land inside it: the fastest of
        # three (the first, with cold caches, is slower than the ones the kills hit).
        times = []
        for i in range(3):
            t0 = time.monotonic()
            creator.stdin.write(f"{tmp_path / f'whole-{i}'}\n")
            creator.stdin.flush()
            whole_pid = int(creator.stdout.readline())
            while _alive(whole_pid):
                time.sleep(0.01)
            times.append(time.monotonic() - t0)
            assert (tmp_path / f"whole-{i}" / "mlflow.db").is_file()
        create_s = min(times)
        rng = random.Random(15)
        folders, hit = [], 0
        for i in range(30):
            folder = tmp_path / f"kill-{i}"
            folders.append(str(folder))
            creator.stdin.write(f"{folder}\n")
            creator.stdin.flush()
            pid = int(creator.stdout.readline())
            time.sleep(rng.uniform(0.0, create_s * 1.1))
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
                hit += 1
            while _alive(pid):
                time.sleep(0.005)
    finally:
        creator.stdin.close()
        creator.wait(30)
    assert hit >= 20, f"only {hit} of 30 kills landed during creation ({create_s:.2f} s): widen the window"
    out = subprocess.run(
        [sys.executable, "-c", VERIFY, *folders],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "LLMOPS_LINEAGE": "off"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == folders, "every folder works after the kill"
    print(f"\nstore creation {create_s:.2f} s; {hit} of 30 kills landed inside it; 30 of 30 folders work")
    for folder in folders:
        assert not list(Path(folder).glob(".mlflow.db.building-*")), "no leftover half-built file"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purpose
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _kernel_env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMOPS_", "JPY_"))}
    env.update(
        {
            "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
            "LLMOPS_HOME": str(home),
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
    )
    return env


def test_a_kernel_killed_while_loading_leaves_a_folder_the_next_kernel_uses(tmp_path):
    rng = random.Random(16)
    for i in range(3):
        home = tmp_path / f"home{i}"
        kernel = Kernel(_kernel_env(home), tmp_path)
        kernel.kc.execute("%load_ext llmops_magics")
        # The extension creates the store while it loads: kill the kernel in the middle.
        deadline = time.monotonic() + 120
        while not list(home.glob(".mlflow.db.building-*")) and not (home / "mlflow.db").exists():
            assert time.monotonic() < deadline, "the kernel never started creating the store"
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 1.0))
        os.kill(kernel.km.provisioner.pid, signal.SIGKILL)
        kernel.stop()
        after = Kernel(_kernel_env(home), tmp_path)
        try:
            reply, outputs = after.run("%load_ext llmops_magics")
            assert reply["status"] == "ok", outputs
            reply, outputs = after.run(f"%%llm_prompt after-kill-{i} -m first\nHello {{{{name}}}}")
            assert reply["status"] == "ok", outputs
        finally:
            after.stop()


def _store_with(tmp_path: Path, *, leftover: bool, runs: int) -> Path:
    path = tmp_path / "mlflow.db"
    mlflow_store.ensure(path, (tmp_path / "artifacts").as_uri())
    con = sqlite3.connect(path)
    if leftover:  # what an interrupted batch migration leaves behind
        con.execute("CREATE TABLE _alembic_tmp_experiments AS SELECT * FROM experiments")
    for i in range(runs):
        con.execute(
            "INSERT INTO runs (run_uuid, name, experiment_id, lifecycle_stage, status, start_time) "
            f"VALUES ('r{i}', 'r', 0, 'active', 'FINISHED', 0)"
        )
    con.commit()
    con.close()
    return path


def test_a_half_built_store_holding_nothing_is_rebuilt(tmp_path):
    path = _store_with(tmp_path, leftover=True, runs=0)
    assert mlflow_store.health(path).state == "broken"
    cfg = config.configure(home=tmp_path, tracking_uri="")
    run = tracking.log_run(run_name="x", tags={}, params={}, metrics={"m": 1}, cfg=cfg)
    assert run and mlflow_store.health(path).state == "ok"
    assert list(tmp_path.glob("mlflow.db.broken-*")), "the broken file is kept aside, not deleted"


def test_a_damaged_store_holding_runs_is_left_alone_and_doctor_names_the_fix(tmp_path):
    path = _store_with(tmp_path, leftover=True, runs=2)
    health = mlflow_store.health(path)
    assert health.state == "damaged" and "2 runs" in health.detail
    assert "DROP TABLE _alembic_tmp_experiments" in health.fix and "mlflow db upgrade" in health.fix
    cfg = config.configure(home=tmp_path, tracking_uri="")
    with pytest.raises(TrackingError, match="damaged.*fix it with"):
        tracking.client(cfg)
    from llmops_magics.core.doctor import check_mlflow

    check = check_mlflow(cfg)
    assert check.status == "fail" and check.fix == health.fix


# ---------------------------------------------------------------- MLflow down


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = MlflowServer(tmp_path_factory.mktemp("durability-mlflow")).start()
    yield srv
    srv.stop()


@pytest.fixture
def proxy(server):
    p = CutOffProxy(server.uri)
    yield p
    p.close()


@pytest.fixture
def on_server(server, proxy, tmp_path):
    """The store as the notebook sees it: through a proxy that can fall silent."""
    cfg = config.configure(tracking_uri=proxy.uri, home=tmp_path / "home")
    yield cfg
    proxy.restore()
    if not server.running:
        server.start()
    else:
        server.thaw()


def _timed(fn):
    t0 = time.monotonic()
    value = fn()
    return value, time.monotonic() - t0


def _magics(shell, adapter: Path) -> dict:
    """Each magic that touches MLflow, as the test runs it while MLflow is down."""
    return {
        "%%llm": lambda: shell.run_cell("%%llm --max-tokens 4 --backend vllm\nWhat is the capital of France?"),
        "%%llm pinned": lambda: shell.run_cell("%%llm --max-tokens 4 --backend vllm --model durable@champion\nhi"),
        "%%llm locked": lambda: shell.run_cell(
            "%%llm --max-tokens 4 --backend vllm --model durable-locked@champion\nhi"
        ),
        "%%shadow": lambda: shell.run_cell(
            "%%shadow --primary default --candidate default --max-tokens 4 --backend vllm\nhi\nho"
        ),
        "%adapter_check": lambda: shell.run_line_magic("adapter_check", f"{adapter} --base default --static-only"),
        "%lance_migrate": lambda: shell.run_line_magic("lance_migrate", "plan durable_docs --to minilm-cls"),
        "%llm_prompt": lambda: shell.run_cell("%%llm_prompt durable-prompt -m second\nSay {{x}} loudly."),
        "%llm_pin": lambda: shell.run_line_magic("llm_pin", "prompt durable-prompt"),
        "%llm_alias": lambda: shell.run_line_magic("llm_alias", "model durable champion 1"),
        "%llm_model": lambda: shell.run_line_magic("llm_model", "list"),
        "%lineage sync": lambda: shell.run_line_magic("lineage", "sync"),
    }


# What each magic still gives while MLflow is down: a result with a one-line warning, or
# one clear error line.
KEEPS = {"%%llm", "%%llm pinned", "%%llm locked", "%%shadow", "%adapter_check", "%lance_migrate"}
# Refs that resolve without the registry while it is down, and from where.
RESOLVED_FROM = {"%%llm pinned": "from the pin", "%%llm locked": "from the lockfile"}


@pytest.mark.parametrize("outage", ["refused", "frozen", "silent"])
def test_every_magic_spends_at_most_the_budget_on_a_down_mlflow(shell, server, proxy, on_server, lora_adapter, outage):
    from llmops_magics.core.registry.models import register_model

    llmops_magics.clear_pins()
    register_model("durable", "default", alias="champion")
    register_model("durable-locked", "default", alias="champion")
    shell.run_cell("%%llm_prompt durable-prompt -m first\nSay {{x}}.")
    # durable-locked is in the lockfile only; durable is pinned.
    shell.run_line_magic("llm_pin", "model durable-locked@champion")
    shell.run_line_magic("llm_pin", f"--save {on_server.home.parent / 'llmops.lock.json'}")
    shell.run_line_magic("llm_pin", "--clear")
    shell.run_line_magic("llm_pin", "model durable@champion")
    llmops_magics.llm("warm up", backend="vllm", max_tokens=2, log=False)
    llmops_magics.create_index("durable_docs", ["Bees make honey.", "Rivers flow to the sea.", "Tea is a drink."])
    magics = _magics(shell, lora_adapter)
    # Each magic's own work, measured with MLflow up, to subtract from the outage time.
    healthy = {}
    for name in KEEPS:
        _, healthy[name] = _timed(magics[name])
    if outage == "refused":
        server.kill()
    elif outage == "frozen":
        server.freeze()
    else:
        proxy.silence()
    try:
        for name, run in magics.items():
            if name in KEEPS:
                result, seconds = _timed(run)
                assert any("kept" in w for w in result.warnings), (name, result.warnings)
                assert all("\n" not in w for w in result.warnings)
                assert result.run_id is None and result.run_key
                if name in RESOLVED_FROM:
                    assert any(RESOLVED_FROM[name] in w for w in result.warnings), result.warnings
            else:
                t0 = time.monotonic()
                try:
                    outcome = run()
                    text = str(outcome)
                except Exception as e:  # one clear line
                    text = str(e)
                    assert "\n" not in text.strip(), text
                seconds = time.monotonic() - t0
                assert "MLflow" in text and "//127.0.0.1" in text, text
            spent = seconds - healthy.get(name, 0.0)
            assert spent <= BUDGET_S + SLACK_S, f"{name} spent {spent:.1f} s on a {outage} MLflow"
            print(f"\n{outage}: {name} spent {max(spent, 0.0):.2f} s on MLflow")
    finally:
        proxy.restore()
    kept = sorted((on_server.home / "runs-pending").glob("*.json"))
    assert len(kept) == len(KEEPS)
    keys = {json.loads(p.read_text())["key"]: json.loads(p.read_text()) for p in kept}
    if outage == "refused":
        server.start()
    elif outage == "frozen":
        server.thaw()
    # Back: the background shipper or one sync writes every kept run, exactly once, with
    # the times of the work.
    report = shell.run_line_magic("lineage", "sync")
    assert report.error is None, str(report)
    again = shell.run_line_magic("lineage", "sync")
    assert again.runs_shipped == 0 and again.runs_pending == 0
    c = tracking.client()
    exp = tracking.experiment_id()
    for key, record in keys.items():
        runs = c.search_runs([exp], filter_string=f"tags.`llmops.run_key` = '{key}'")
        assert len(runs) == 1, f"run {record['run_name']} written {len(runs)} times"
        run = runs[0]
        assert run.info.status == "FINISHED"
        assert run.info.start_time == record["start_ms"] and run.info.end_time == record["end_ms"]
        assert run.data.metrics == pytest.approx(record["metrics"])
    assert not list((on_server.home / "runs-pending").glob("*.json"))


def test_a_run_cut_off_midway_is_completed_once_not_left_running(server, on_server):
    """The server answers until the run is created, then goes away: the half-written run
    is found by its key on replay and completed, not written a second time."""
    proxy = CutOffProxy(server.uri, cut_after="/runs/create")
    try:
        cfg = config.configure(tracking_uri=proxy.uri, mlflow_timeout_s=3, home=on_server.home)
        tracking.experiment_id(cfg=cfg)  # the experiment exists before the cut
        with pytest.raises(tracking.RunKept) as kept:
            tracking.log_run(
                run_name="cut",
                tags={"t": "1"},
                params={"p": "1"},
                metrics={"m": 3.0},
                tables={"rows.json": {"a": [1, 2]}},
                cfg=cfg,
            )
        half = tracking.client(config.configure(tracking_uri=server.uri)).search_runs(
            [tracking.experiment_id()], filter_string=f"tags.`llmops.run_key` = '{kept.value.key}'"
        )
        assert len(half) == 1 and half[0].info.status in ("RUNNING", "FAILED")
        proxy.restore()
        report = tracking.ship_pending(config.configure(tracking_uri=proxy.uri))
        assert report.shipped == 1 and not report.error
        runs = tracking.client().search_runs(
            [tracking.experiment_id()], filter_string=f"tags.`llmops.run_key` = '{kept.value.key}'"
        )
        assert len(runs) == 1 and runs[0].info.status == "FINISHED"
        assert runs[0].data.metrics == {"m": 3.0} and runs[0].data.params == {"p": "1"}
        text = tracking.read_artifact(runs[0].info.run_id, "rows.json")
        assert json.loads(text) == {"columns": ["a"], "data": [[1], [2]]}
    finally:
        proxy.close()


def test_a_result_displays_without_calling_mlflow(server, on_server):
    result = llmops_magics.llm("hi", backend="vllm", max_tokens=2)
    config.configure(ui_url="http://127.0.0.1:5000")
    server.freeze()
    try:
        bundle, seconds = _timed(result._repr_mimebundle_)
    finally:
        server.thaw()
    assert seconds < 1.0 and result.run_id[:8] in bundle["text/html"]


# ---------------------------------------------------------------- corrupt spool lines


def _record(i: int, session: str = "s-good") -> dict:
    return {
        "record_id": f"rec-{session}-{i}",
        "session_id": session,
        "notebook": None,
        "cell_id": None,
        "execution_count": i,
        "status": "ok",
        "error_type": None,
        "error": None,
        "started": f"2026-12-05T10:00:{i:02d}.000+00:00",
        "duration_s": 0.1,
        "source": f"x = {i}",
        "source_digest": "sha256:0",
        "pins": [],
        "context": {},
        "events": [],
    }


BAD_LINES = {
    "truncated": b'{"record_id": "t", "session_id": "s", "star',
    "binary": bytes(b for b in range(256) if b != 10),
    "huge": b'{"record_id": "h", "pad": "' + b"x" * (9 << 20) + b'"}',
    "null": b"null",
    "list": b"[1, 2]",
    "string": b'"just text"',
    "number": b"42",
    "empty object": b"{}",
    "wrong types": json.dumps({**_record(90), "execution_count": "three", "events": "x"}).encode(),
    "list record id": json.dumps({**_record(91), "record_id": ["a", "b"]}).encode(),
    "missing fields": json.dumps({"record_id": "m-1", "source": "x"}).encode(),
    "bad time": json.dumps({**_record(92), "started": "yesterday"}).encode(),
    "duplicate record id": json.dumps(_record(1)).encode(),
}


def test_every_shape_of_bad_spool_line_is_skipped_and_the_rest_ships_once(tmp_path):
    from llmops_magics.core.lineage.ship import RECORDS_FILE, Shipper, ship_once
    from llmops_magics.core.lineage.spool import Spool

    cfg = config.configure(home=tmp_path / "home", tracking_uri="")
    spool_dir = cfg.home / "lineage"
    spool_dir.mkdir(parents=True)
    good = [_record(i) for i in range(6)]
    lines = []
    for i, bad in enumerate(BAD_LINES.values()):
        lines.append(json.dumps(good[i % len(good)]).encode() if i < len(good) else None)
        lines.append(bad)
    with open(spool_dir / "a-first.jsonl", "wb") as f:
        f.write(b"".join(line + b"\n" for line in lines if line is not None))
    # A second session's file after the bad one: it must ship too.
    later = [_record(i, "s-later") for i in range(3)]
    (spool_dir / "b-later.jsonl").write_text("".join(json.dumps(r) + "\n" for r in later) + '{"torn": ')
    os.utime(spool_dir / "b-later.jsonl", (time.time() + 5, time.time() + 5))
    report = ship_once(spool_dir, cfg)
    assert report.error is None, report.error
    assert report.bad_lines == len(BAD_LINES), report
    assert report.shipped == len(good) + len(later)
    again = ship_once(spool_dir, cfg)
    assert again.shipped == 0 and again.bad_lines == 0, "quarantined once, counted once"
    quarantined = [json.loads(x) for x in (spool_dir / "a-first.quarantine").read_text().splitlines()]
    assert len(quarantined) == len(BAD_LINES) and all(q["reason"] for q in quarantined)
    c = tracking.client(cfg)
    shipped = {}
    for run in c.search_runs([tracking.experiment_id("llmops-lineage", cfg)]):
        text = tracking.read_artifact(run.info.run_id, RECORDS_FILE, cfg)
        for line in text.splitlines():
            r = json.loads(line)
            shipped[r["record_id"]] = shipped.get(r["record_id"], 0) + 1
    assert shipped == {r["record_id"]: 1 for r in good + later}
    # And a shipper thread on this home stays alive through it all.
    shipper = Shipper(Spool(spool_dir, "live"), batch_s=0.1)
    shipper.start()
    time.sleep(1.0)
    assert shipper._thread.is_alive()
    shipper.stop(timeout_s=2)


def test_no_view_run_lines_and_no_credentials_in_what_a_cell_prints(shell, server, tmp_path, capfd):
    """MLflow's set_terminated prints "View run ... at <tracking URI>" for a server store,
    credentials included, even from the background shipper."""
    secret_uri = server.uri.replace("http://", "http://analyst:s3cr3t-pw@")
    config.configure(tracking_uri=secret_uri, home=tmp_path / "home")
    result = shell.run_cell("%%llm --max-tokens 4 --backend vllm\nhi")
    shell.run_line_magic("lineage", "sync")
    config.configure(tracking_uri=secret_uri.replace(str(server.port), "1"))  # refused: the error line
    down = shell.run_cell("%%llm --max-tokens 4 --backend vllm\nhi")
    out, err = capfd.readouterr()
    shown = out + err + str(result._repr_mimebundle_()) + str(down._repr_mimebundle_())
    assert result.run_id and "View run" not in shown
    assert "s3cr3t-pw" not in shown and down.warnings and "analyst" not in shown
