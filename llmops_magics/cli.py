"""``llmops-magics``: prepare the default models, run the demo, check the set-up."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import config
from .errors import LlmopsError, VerifyUsageError


def cmd_prepare(args) -> int:
    """Convert the default chat model once and check the embedder is present."""
    # deferred: each command loads only its own stack (torch, nbclient, mlflow), so --help is instant
    from .backends.default_models import chat_model_dir, embedding_model_dir

    cfg = config.settings()
    print(f"default chat model: {chat_model_dir(cfg.model_cache)}")
    print(f"default embedding model: {embedding_model_dir()}")
    return 0


def cmd_demo(args) -> int:
    """Run notebooks/quickstart.ipynb headless and print what each step produced."""
    # deferred: nbclient and a kernel's stack, needed by this command only
    from .core.notebooks import run_notebook, summarize

    cmd_prepare(args)
    notebook = Path(args.notebook)
    if not notebook.is_file():
        print(f"no notebook at {notebook}: run the demo from the repository root", file=sys.stderr)
        return 2
    out = Path(args.output)
    # The notebook writes files (a trained adapter, a changed base) next to itself: run it
    # in a scratch folder, with the stores in the repository's home as usual.
    home = config.settings().home.resolve()
    os.environ["LLMOPS_HOME"] = str(home)
    workdir = home / "demo"
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"running {notebook} in {workdir} (a few minutes on CPU; the first cell starts the engine) ...")
    executed = run_notebook(notebook, out, timeout=args.timeout, cwd=workdir)
    print(summarize(executed))
    print(f"\nexecuted notebook: {out}\nopen it with: jupyter lab {out}")
    return 0


def cmd_doctor(args) -> int:
    """One line per component with a fix where something is missing."""
    # deferred: the checks import mlflow and vLLM's metadata
    from .core.doctor import run_checks

    failed = 0
    for check in run_checks(config.settings()):
        print(check.line())
        failed += check.status == "fail"
    return 1 if failed else 0


def cmd_ui(args) -> int:
    """The MLflow UI on the embedded store, bound to 127.0.0.1."""
    import subprocess

    cfg = config.settings()
    url = f"http://127.0.0.1:{args.port}"
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        cfg.resolved_tracking_uri,
        "--host",
        "127.0.0.1",
        "--port",
        str(args.port),
        "--workers",
        "1",
    ]
    print(f"MLflow UI for {cfg.resolved_tracking_uri}: {url}")
    print(f"link results to it: %config LlmopsMagics.ui_url = '{url}'  (or LLMOPS_UI_URL={url})")
    # One setting: the kernel sends its ui_url to JupyterLab, whose badges and panel follow it.
    print(
        "JupyterLab's badges and LLMOps panel follow that setting (leave Settings > LLMOps > MLflow UI base URL empty)"
    )
    sys.stdout.flush()
    return subprocess.call(cmd)


def cmd_lab(args) -> int:
    """JupyterLab on notebooks/ with the extension, bound to 127.0.0.1."""
    import subprocess

    cmd = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        "--ip",
        "127.0.0.1",
        "--port",
        str(args.port),
        f"--ServerApp.root_dir={Path(args.dir).resolve()}",
        "--no-browser",
    ]
    if os.geteuid() == 0:  # jupyter refuses root without it (containers, Binder-like hosts)
        cmd.append("--allow-root")
    print(f"JupyterLab on {args.dir} at http://127.0.0.1:{args.port}/lab (the token is printed below)")
    sys.stdout.flush()
    return subprocess.call(cmd)


def cmd_reference(args) -> int:
    """Write (or check) docs/magics.md from the magics' parsers."""
    # deferred: IPython, for this command only
    from .magics.reference import magics_reference

    text = magics_reference()
    target = Path(args.output)
    if args.check:
        if not target.is_file() or target.read_text() != text:
            print(f"{target} is out of date: run llmops-magics reference", file=sys.stderr)
            return 1
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    print(f"wrote {target}")
    return 0


def cmd_gate(args) -> int:
    """Exit 0 when the shadow run's recorded verdict meets the bar, 1 when not (2: usage)."""
    from .core.promote import gate_run  # deferred: MLflow's import is for this command only

    decision = gate_run(
        args.run_id,
        require=args.require,
        min_cases=args.min_cases,
        review=args.review,
        min_win_rate=args.min_win_rate,
    )
    print(decision)
    return 0 if decision.ok else 1


def cmd_verify(args) -> int:
    """Execute a saved notebook under its lockfile; one line per generating cell.

    Exit 0 nothing changed, 1 changed with the same pins and hardware, 3 changed and
    something named differs, 2 usage errors."""
    # deferred: nbclient and a kernel's stack, needed by this command only
    from .core.verify import verify

    try:
        result = verify(args.notebook, lock=args.lock, cells=args.cells, timeout=args.timeout)
    except ImportError as e:  # a usage error, not a changed notebook: never exit 1 for it
        e = VerifyUsageError(
            f"verify runs notebooks with nbclient ({e.name} is missing): pip install 'llmops-magics[lab]'"
        )
        if not args.json:
            raise e from None
        print(json.dumps({"notebook": args.notebook, "status": "usage error", "error": str(e), "exit_code": 2}))
        return 2
    except VerifyUsageError as e:
        if not args.json:
            raise
        print(json.dumps({"notebook": args.notebook, "status": "usage error", "error": str(e), "exit_code": 2}))
        return 2
    print(result.to_json() if args.json else result.text())
    return result.exit_code


def cmd_watch(args) -> int:
    """One line; exit 0 when nothing dropped, 1 when a scorer's bucket or the canary is worse, 2 usage."""
    # deferred: MLflow, numpy and the scorers' modules are for this command only
    from .core.watch.run import watch
    from .magics.args import as_kwargs
    from .magics.watch import WatchCommand

    # One reading of the options for both doors: the magic's frozen command (scorers stay
    # module:function text, loaded by core).
    result = watch(**as_kwargs(WatchCommand.from_args(args)))
    # A scheduled job's new scores must land before the process ends (written in the background).
    result.wait_for_writes(timeout=args.write_timeout)
    print(result.line())
    if result.dropped:
        return 1
    # nothing could be compared: not "OK" for a scheduled job, a usage problem (window, baseline)
    return 0 if result.judged else 2


def _watch_parser(sub) -> None:
    # deferred: the option table lives with the magic (one table for both doors); IPython loads only here
    from .magics.watch import add_watch_arguments

    watch = sub.add_parser("watch", help="score an app's traces per bucket; exit 1 on a flagged drop or a worse canary")
    watch.add_argument("experiment", help="the app's MLflow experiment (name or id)")
    watch.add_argument("--scorer", action="append", default=[], help="module:function of an MLflow Scorer")
    add_watch_arguments(watch.add_argument)
    watch.add_argument(
        "--write-timeout", type=float, default=600, help="seconds to wait for the new assessments to be written"
    )
    watch.set_defaults(fn=cmd_watch)


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line on stderr (exit 2), as every other error of
    the CLI: ``error: unrecognized arguments: --bogus (llmops-magics watch --help)``.
    Subcommand parsers are of the same class (argparse makes them with the parent's)."""

    def error(self, message: str):
        """Print ``error: MESSAGE (PROG --help)`` and exit 2."""
        self.exit(2, f"error: {message} ({self.prog} --help)\n")

    def parse_args(self, args=None, namespace=None):
        """As argparse's, but unknown options are blamed on the subcommand they were given to."""
        ns, extra = self.parse_known_args(args, namespace)
        if extra:
            commands = getattr(self, "commands", {})
            commands.get(getattr(ns, "command", None), self).error(f"unrecognized arguments: {' '.join(extra)}")
        return ns


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="llmops-magics", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("prepare", help="convert the default models (one time)").set_defaults(fn=cmd_prepare)
    demo = sub.add_parser("demo", help="run notebooks/quickstart.ipynb headless and summarize")
    demo.add_argument("--notebook", default="notebooks/quickstart.ipynb")
    demo.add_argument("--output", default=".llmops/quickstart.executed.ipynb")
    demo.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    demo.set_defaults(fn=cmd_demo)
    sub.add_parser("doctor", help="check python, torch, vLLM, GPU, models, MLflow, labextension, Ray").set_defaults(
        fn=cmd_doctor
    )
    ui = sub.add_parser("ui", help="the MLflow UI on the embedded store (127.0.0.1)")
    ui.add_argument("--port", type=int, default=5000)
    ui.set_defaults(fn=cmd_ui)
    lab = sub.add_parser("lab", help="JupyterLab on notebooks/ with the extension (127.0.0.1)")
    lab.add_argument("--port", type=int, default=8888)
    lab.add_argument("--dir", default="notebooks")
    lab.set_defaults(fn=cmd_lab)
    ref = sub.add_parser("reference", help="write docs/magics.md from the magics' parsers")
    ref.add_argument("--output", default="docs/magics.md")
    ref.add_argument("--check", action="store_true", help="fail if the file is out of date")
    ref.set_defaults(fn=cmd_reference)
    gate = sub.add_parser("gate", help="exit 0 when a shadow run's recorded verdict meets the bar, 1 when not")
    gate.add_argument("run_id", help="MLflow run id of a %%%%shadow comparison")
    gate.add_argument("--require", choices=["equivalent", "better"], default="equivalent")
    gate.add_argument("--min-cases", type=int, default=0)
    gate.add_argument("--review", action="store_true", help="also require the run's human review")
    gate.add_argument("--min-win-rate", type=float, default=0.4, help="lower 95%% bound of the candidate's win share")
    gate.set_defaults(fn=cmd_gate)
    verify = sub.add_parser(
        "verify", help="re-run a saved notebook under its lockfile and compare every generation with its lineage"
    )
    verify.add_argument("notebook", help="the executed, saved notebook (it is not written)")
    verify.add_argument("--lock", default=None, help="lockfile (default: llmops.lock.json beside the notebook)")
    verify.add_argument("--cells", default=None, help="execution counts to compare, e.g. 3,7 (default: all)")
    verify.add_argument("--json", action="store_true", help="one JSON document instead of the table")
    verify.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    verify.set_defaults(fn=cmd_verify)
    _watch_parser(sub)
    parser.commands = sub.choices  # for parse_args: which subcommand an unknown option was given to
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except LlmopsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
