"""``llmops-magics``: prepare the default models, run the demo, check the set-up."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import config
from .errors import LlmopsError


def cmd_prepare(args) -> int:
    """Convert the default chat model once and check the embedder is present."""
    from .backends.default_models import chat_model_dir, embedding_model_dir

    cfg = config.settings()
    print(f"default chat model: {chat_model_dir(cfg.model_cache)}")
    print(f"default embedding model: {embedding_model_dir()}")
    return 0


def cmd_demo(args) -> int:
    """Run notebooks/quickstart.ipynb headless and print what each step produced."""
    from .core.notebooks import run_notebook, summarize

    cmd_prepare(args)
    notebook = Path(args.notebook)
    if not notebook.is_file():
        print(f"no notebook at {notebook}: run the demo from the repository root", file=sys.stderr)
        return 2
    out = Path(args.output)
    print(f"running {notebook} (the first run starts the vLLM engine: about a minute) ...")
    executed = run_notebook(notebook, out, timeout=args.timeout)
    print(summarize(executed))
    print(f"\nexecuted notebook: {out}\nopen it with: jupyter lab {out}")
    return 0


def cmd_doctor(args) -> int:
    """One line per component with a fix where something is missing."""
    from .core.doctor import run_checks

    failed = 0
    for check in run_checks(config.settings()):
        print(check.line())
        failed += check.status == "fail"
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llmops-magics", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("prepare", help="convert the default models (one time)").set_defaults(fn=cmd_prepare)
    demo = sub.add_parser("demo", help="run notebooks/quickstart.ipynb headless and summarize")
    demo.add_argument("--notebook", default="notebooks/quickstart.ipynb")
    demo.add_argument("--output", default=".llmops/quickstart.executed.ipynb")
    demo.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    demo.set_defaults(fn=cmd_demo)
    sub.add_parser("doctor", help="check python, torch, vLLM, GPU, models, MLflow, labextension").set_defaults(
        fn=cmd_doctor
    )
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
