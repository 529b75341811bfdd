"""``%llm_watch`` names notebook pins made just before a flag, read from the lineage shipped to MLflow.

Real sessions: a lineage recorder keeps the ``Pinned`` events core announces, ``ship_once``
writes each session to the sqlite store, and ``pin_changes`` reads them back.
"""

from __future__ import annotations

import dataclasses
import json
import time

from servers import free_port

from llmops_magics.config import settings
from llmops_magics.core import events, tracking
from llmops_magics.core.lineage import record as lineage
from llmops_magics.core.lineage.ship import RECORDS_FILE, ship_once
from llmops_magics.core.lineage.spool import spool_dir
from llmops_magics.core.watch.changes import Change
from llmops_magics.core.watch.pin_changes import _ms, pin_changes

FAR = 10**14  # a window end far in the future


def _cell(rec, count: int, *pins) -> int:
    """One cell announcing ``pins`` ((registry, name, version, alias)); its start in ms."""
    time.sleep(0.01)  # cells a few ms apart, so each has its own start
    rec.begin_cell(f"%llm_pin cell {count}", cell_id=f"cell-{count}")
    for registry, name, version, alias in pins:
        events.emit(events.Pinned(registry=registry, name=name, version=version, alias=alias, digest="sha256:ab"))
    return _ms(rec.end_cell(count).started)


def _session(home, notebook: str, *cells) -> tuple[lineage.LineageRecorder, list[int]]:
    rec = lineage.LineageRecorder(home, notebook=notebook, ship=False)
    starts = [_cell(rec, i + 1, *pins) for i, pins in enumerate(cells)]
    rec.spool.sync()
    rec.close(0)
    return rec, starts


def _session_run(session_id: str) -> str:
    c = tracking.client()
    exp = c.get_experiment_by_name("llmops-lineage")
    found = c.search_runs([exp.experiment_id], filter_string=f"tags.`llmops.lineage.session_id` = '{session_id}'")
    return found[0].info.run_id


def test_a_pin_move_is_named_with_what_it_replaced_inside_its_window_only(tmp_path):
    home = tmp_path / "home"
    cfg = settings()
    t0 = int(time.time() * 1000)
    first, (c1, c2, c3) = _session(
        home,
        "work/eval.ipynb",
        [("model", "chat", 1, "champion"), ("model", "other", 5, None), ("prompt", "summarize", 3, "production")],
        [("model", "chat", 1, "champion")],  # the same pin again: no change
        [("model", "chat", 2, "champion")],
    )
    # A later session loading the pin in force is no change; moving it on is, said against that one.
    second, (d1, d2) = _session(home, "work/next.ipynb", [("model", "chat", "2", None)], [("model", "chat", 3, None)])
    report = ship_once(spool_dir(home), cfg)
    assert report.error is None and report.shipped == 5

    changes, notes = pin_changes({"model": {"chat"}, "prompt": set()}, t0, FAR, cfg)
    assert notes == []
    assert all(
        isinstance(c, Change) and (c.kind, c.subject, c.source) == ("pin", "model chat", "lineage") for c in changes
    )
    assert [c.at_ms for c in changes] == [c1, c3, d2]
    assert changes[0].text.startswith("model chat: pinned to 1 via chat@champion · session eval.ipynb")
    assert (
        changes[1].text == f"model chat: pinned to 2 (was 1) via chat@champion · session eval.ipynb · {changes[1].when}"
    )
    assert changes[2].text.startswith("model chat: pinned to 3 (was 2) · session next.ipynb")

    # A window holding only the move still says what it replaced; outside the window, nothing.
    only_move, _ = pin_changes({"model": {"chat"}}, c3, c3, cfg)
    assert [c.text for c in only_move] == [changes[1].text]
    assert [c.at_ms for c in pin_changes({"model": {"chat"}}, t0, c3 - 1, cfg)[0]] == [c1]
    assert pin_changes({"model": {"chat"}}, d2 + 1, FAR, cfg) == ([], [])
    # Names not asked for are not read; a prompt pin is its own subject.
    assert pin_changes({"model": {"nobody"}}, t0, FAR, cfg) == ([], [])
    prompts, _ = pin_changes({"prompt": {"summarize"}}, t0, FAR, cfg)
    assert [(c.subject, c.at_ms) for c in prompts] == [("prompt summarize", c1)]
    assert "pinned to 3 via summarize@production" in prompts[0].text

    # Bounded: only the newest session is read, and the note says so.
    newest, notes = pin_changes({"model": {"chat"}}, t0, FAR, cfg, max_sessions=1)
    assert [c.at_ms for c in newest] == [d1, d2] and "newest 1 lineage sessions" in notes[0]

    # A damaged line in a shipped session is skipped, the rest still read.
    run_id = _session_run(first.session_id)
    text = tracking.read_artifact(run_id, RECORDS_FILE, cfg)
    tracking.client(cfg).log_text(
        run_id, "{not json\n" + json.dumps({"started": "yesterday"}) + "\n" + text, RECORDS_FILE
    )
    again, notes = pin_changes({"model": {"chat"}}, t0, FAR, cfg)
    assert [c.text for c in again] == [c.text for c in changes]
    assert notes == ["skipped 2 unreadable lineage line(s) while reading notebook pins"]


def test_an_unreachable_store_is_a_note_not_an_error():
    cfg = dataclasses.replace(settings(), tracking_uri=f"http://127.0.0.1:{free_port()}", mlflow_timeout_s=1.0)
    t = time.monotonic()
    changes, notes = pin_changes({"model": {"chat"}}, 0, FAR, cfg)
    assert changes == [] and len(notes) == 1
    assert notes[0].startswith("notebook pins not read: MLflow at http://127.0.0.1:") and "\n" not in notes[0]
    assert time.monotonic() - t < 8


def test_a_store_with_no_lineage_has_no_pins_and_nothing_to_say(tmp_path):
    # Apps watched without notebooks (lineage off, a scheduled job) are the common case: no noise.
    cfg = dataclasses.replace(settings(), tracking_uri=f"sqlite:///{tmp_path / 'empty.db'}")
    assert pin_changes({"model": {"chat"}}, 0, FAR, cfg) == ([], [])
    assert pin_changes({"model": set(), "prompt": set()}, 0, FAR, cfg) == ([], [])
