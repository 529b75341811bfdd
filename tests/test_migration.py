"""%lance_migrate and its twins on real LanceDB tables with real embedders.

Embedders: ``default-embedding`` (all-MiniLM-L6-v2), ``smollm2-mean`` (SmolLM2-135M
hidden states, 576-d: another model) and ``minilm-cls`` (MiniLM weights, CLS pooling:
same dimension, different space). Tables are small: the machine has two shared cores.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from IPython.core.error import UsageError

import llmops_magics
from llmops_magics.core import tracking
from llmops_magics.core.vectors.embedders import get_embedder
from llmops_magics.core.vectors.table import MixedVectorSpaces, search_vector
from llmops_magics.errors import BadInput

TOPICS = [
    "cats purr and chase mice",
    "dogs bark at the mail carrier",
    "the stock market fell sharply today",
    "heavy rain floods the valley",
    "python is a programming language",
    "paris is the capital of france",
    "neural networks learn from data",
    "how to bake sourdough bread",
]
TEXTS = [f"{t} (note {i})" for i, t in enumerate(TOPICS * 3)]
QUERIES = ["kittens hunting", "shares and investors", "baking at home"]
LABELS = {q: [i for i, t in enumerate(TEXTS) if key in t] for q, key in zip(QUERIES, ["cats", "stock", "bread"])}


def rows_by_id(table) -> dict:
    table.checkout_latest()
    return {r["id"]: r for r in table.to_arrow().to_pylist()}


def open_raw(db, name):
    import lancedb

    return lancedb.connect(db).open_table(name)


@pytest.fixture
def db(tmp_path):
    return str(tmp_path / "lancedb")


@pytest.fixture
def recorded(record_events):
    return record_events("migration_step")


def test_whole_flow_to_another_model(db, recorded):
    made = llmops_magics.create_index("docs", TEXTS, db=db)
    assert made.rows == len(TEXTS) and made.embedder.ref == "default-embedding" and made.embedder.dimension == 384
    m = llmops_magics.migration("docs", db=db)

    plan = m.plan("smollm2-mean")
    assert plan.details["rows"] == len(TEXTS) and plan.details["embed_rate_per_s"] > 0
    assert plan.version_before == plan.version_after  # planning writes nothing

    start = m.start("smollm2-mean")
    assert start.details["column"] == "vector_smollm2_mean"
    assert m.state["status"] == "started" and m.state["to"]["dimension"] == 576
    assert "0/24 filled" in m.status().details["column vector_smollm2_mean"]

    done = m.backfill(batch=8)
    assert done.details["rows_embedded"] == len(TEXTS) and done.details["rows_left"] == 0
    again = m.backfill(batch=8)  # idempotent: nothing left to embed
    assert again.details["rows_embedded"] == 0 and again.version_after == again.version_before

    rows = rows_by_id(open_raw(db, "docs"))
    texts = [rows[i]["text"] for i in sorted(rows)]
    want = get_embedder("smollm2-mean").embed(texts)
    got = np.array([rows[i]["vector_smollm2_mean"] for i in sorted(rows)], dtype=np.float32)
    assert np.allclose(got, want, atol=1e-4)

    assert m.index().summary.startswith("skipped")  # 24 rows: brute force is exact

    report = m.shadow(QUERIES, k=3, labels=LABELS)
    h = report.headline()
    assert h["queries"] == 3 and h["coverage"] == 1.0
    assert 0 <= h["mean_overlap_at_k"] <= 1 and 0 <= h["mean_rbo"] <= 1 and 0 <= h["ndcg_new"] <= 1
    assert h["ndcg_old"] > 0.5  # MiniLM finds the labelled topic
    assert len(report.rows[0]["rank_changes"]) == 3
    bundle = report._repr_mimebundle_()
    assert "application/vnd.plotly.v1+json" in bundle and len(report.figure.data) == 5

    m.cutover()
    hit = llmops_magics.search("docs", "kittens hunting", k=2, db=db)
    assert hit.column == "vector_smollm2_mean" and hit.embedder.ref == "smollm2-mean" and len(hit.rows) == 2

    with pytest.raises(BadInput, match="confirm with --yes"):
        m.finish()
    m.finish(confirm=True)
    assert "vector" not in open_raw(db, "docs").schema.names
    assert m.state["status"] == "finished"
    assert llmops_magics.search("docs", "kittens hunting", k=1, db=db).embedder.ref == "smollm2-mean"

    steps = [e["step"] for e in recorded]
    assert steps == ["plan", "start", "backfill", "backfill", "index", "shadow", "cutover", "finish"]
    assert all(e["run_id"] and e["version_after"] >= e["version_before"] for e in recorded)
    run = tracking.client().get_run(recorded[2]["run_id"])
    assert run.data.tags["llmops.step"] == "backfill" and run.data.metrics["rows_embedded"] == len(TEXTS)


def test_guard_refuses_mixed_vector_spaces(db):
    llmops_magics.create_index("g", TEXTS[:8], db=db)
    with pytest.raises(MixedVectorSpaces, match=r"^mixed vector spaces: the query vector has 576 dimensions .* 384-d"):
        search_vector("g", np.ones(576, np.float32), db=db)
    # Same dimension, other model: only the recorded digest can tell.
    with pytest.raises(MixedVectorSpaces, match="built with default-embedding .* the query embedder is minilm-cls"):
        llmops_magics.search("g", "cats", db=db, embedder="minilm-cls")
    assert search_vector("g", get_embedder().embed(["cats"])[0], k=1, db=db).rows[0]["id"] == 0


def test_rollback_before_cutover_restores_the_old_table_exactly(db):
    llmops_magics.create_index("r", TEXTS[:12], db=db)
    raw = open_raw(db, "r")
    before_rows, before_schema = rows_by_id(raw), raw.schema
    m = llmops_magics.migration("r", db=db, log=False)
    m.start("minilm-cls")
    m.backfill(batch=4, max_batches=2)
    assert m.state["status"] == "started"
    m.rollback()
    raw.checkout_latest()
    assert raw.schema == before_schema and raw.schema.metadata == before_schema.metadata
    assert rows_by_id(raw) == before_rows
    assert m.state == {} and m.status().details["migration"] == "none"


def test_rollback_after_cutover_switches_back_then_restores(db):
    llmops_magics.create_index("s", TEXTS[:8], db=db)
    m = llmops_magics.migration("s", db=db, log=False)
    m.start("minilm-cls")
    with pytest.raises(BadInput, match="still empty: run backfill before cutover"):
        m.cutover()
    m.add(["owls hunt at night"])  # written during the migration: must survive any rollback
    m.backfill(batch=8)
    m.cutover()
    assert llmops_magics.search("s", "dogs", db=db).embedder.ref == "minilm-cls"
    m.rollback()
    assert m.state["status"] == "started"
    assert llmops_magics.search("s", "dogs", db=db).embedder.ref == "default-embedding"
    m.rollback()
    rows = rows_by_id(open_raw(db, "s"))
    assert "vector_minilm_cls" not in open_raw(db, "s").schema.names and len(rows) == 9
    assert rows[8]["text"] == "owls hunt at night"
    assert np.allclose(rows[8]["vector"], get_embedder().embed(["owls hunt at night"])[0], atol=1e-4)
    with pytest.raises(BadInput, match="no migration"):
        m.rollback()


def test_dual_writes_during_backfill_are_not_lost(db):
    llmops_magics.create_index("d", TEXTS, db=db)
    m = llmops_magics.migration("d", db=db, log=False)
    m.start("minilm-cls")
    writer = llmops_magics.migration("d", db=db, log=False)  # another handle, as another cell would have
    new_texts = [f"late arrival {i}: owls hunt at night" for i in range(6)]
    errors = []
    worker = threading.Thread(target=lambda: _capture(errors, m.backfill, batch=2, progress=False))
    worker.start()
    for i in range(0, 6, 2):
        writer.add([{"id": 100 + i + j, "text": new_texts[i + j]} for j in range(2)])
    worker.join()
    assert not errors
    m.backfill(batch=8, progress=False)  # whatever the first pass did not reach
    rows = rows_by_id(open_raw(db, "d"))
    assert len(rows) == len(TEXTS) + 6
    assert all(r["vector_minilm_cls"] is not None and r["vector"] is not None for r in rows.values())
    added = [rows[100 + i] for i in range(6)]
    assert np.allclose([r["vector_minilm_cls"] for r in added], get_embedder("minilm-cls").embed(new_texts), atol=1e-4)
    assert np.allclose([r["vector"] for r in added], get_embedder().embed(new_texts), atol=1e-4)


def test_a_row_edited_during_backfill_keeps_its_edit(db, monkeypatch):
    """The backfill reads whole rows from a snapshot; an edit made after that snapshot
    must never be reverted by the merge, and the edited row is embedded from its new text
    on the next pass."""
    from llmops_magics.core.vectors.migration import Migration

    llmops_magics.create_index("e", [{"text": t, "group": i % 3} for i, t in enumerate(TEXTS[:8])], db=db)
    m = llmops_magics.migration("e", db=db, log=False)
    m.start("minilm-cls")
    real_target = Migration._target
    edited = "edited: owls hunt at night"

    class EditsWhileEmbedding:
        """The real embedder; its first call is when another writer edits a row of that batch."""

        def __init__(self, emb):
            self.emb, self.spec, self.done = emb, emb.spec, False

        def embed(self, texts, **kw):
            if not self.done:
                self.done = True
                open_raw(db, "e").update(where=f"id = {TEXTS.index(texts[0])}", values={"text": edited})
            return self.emb.embed(texts, **kw)

    monkeypatch.setattr(Migration, "_target", lambda self, state: EditsWhileEmbedding(real_target(self, state)))
    first = m.backfill(batch=4, progress=False)
    assert first.details["rows_changed_meanwhile"] == 1 and first.details["rows_left"] == 1
    assert "run backfill again" in first.summary
    rows = rows_by_id(open_raw(db, "e"))
    (row,) = [r for r in rows.values() if r["text"] == edited]
    assert row["vector_minilm_cls"] is None and row["group"] == row["id"] % 3
    monkeypatch.setattr(Migration, "_target", real_target)
    m.backfill(batch=4, progress=False)
    row = rows_by_id(open_raw(db, "e"))[row["id"]]
    assert np.allclose(row["vector_minilm_cls"], get_embedder("minilm-cls").embed([edited])[0], atol=1e-4)
    assert len(rows) == 8


def _capture(errors, fn, **kw):
    try:
        fn(**kw)
    except Exception as e:  # reported by the test's assertion
        errors.append(e)


def test_magic_runs_the_steps(shell, db):
    llmops_magics.create_index("mg", TEXTS[:10], db=db)
    shell.user_ns["qs"] = QUERIES[:2]
    out = shell.run_line_magic("lance_migrate", f"plan mg --to minilm-cls --db {db}")
    assert out.step == "plan" and "minilm-cls" in out._repr_mimebundle_()["text/plain"]
    shell.run_line_magic("lance_migrate", f"start mg --to minilm-cls --column v2 --db {db}")
    shell.run_line_magic("lance_migrate", f"backfill mg --batch 5 --db {db}")
    status = shell.run_line_magic("lance_migrate", f"status mg --db {db}")
    assert "10/10 filled" in status.details["column v2"]
    report = shell.run_line_magic("lance_migrate", f"shadow mg --queries qs --k 3 --db {db}")
    assert len(report.rows) == 2 and shell.user_ns["_lance_migrate"] is report
    shell.run_line_magic("lance_migrate", f"cutover mg --db {db}")
    done = shell.run_line_magic("lance_migrate", f"finish mg --yes --db {db}")
    assert done.details["dropped_column"] == "vector"
    html = done._repr_mimebundle_()["text/html"]
    assert "<b>finish mg" in html


@pytest.mark.parametrize(
    "line, message",
    [
        ("start mg", "start needs --to EMBEDDER_REF"),
        ("backfill mg --to minilm-cls", "backfill takes no --to"),
        ("backfill mg", "has no migration in state"),
        ("start mg --to default-embedding", "already built with default-embedding"),
        ("start mg --to no-such-model", "unknown embedder 'no-such-model'"),
        ("status nosuch", "no LanceDB table 'nosuch'"),
        ("shadow mg", "shadow needs --queries"),
        ("shadow mg --queries missing_var", "neither a variable in this notebook nor a file"),
        ("launch mg", "invalid choice"),
    ],
)
def test_bad_input_is_one_line(shell, db, line, message):
    llmops_magics.create_index("mg", TEXTS[:4], db=db, mode="overwrite")
    with pytest.raises(UsageError) as err:
        shell.run_line_magic("lance_migrate", f"{line} --db {db}")
    assert message in str(err.value) and "\n" not in str(err.value).strip()


def test_html_escapes_table_text(db):
    llmops_magics.create_index("x", ["<script>alert(1)</script> cats"], db=db)
    html = llmops_magics.search("x", "cats", db=db)._repr_mimebundle_()["text/html"]
    assert "<script>" not in html and "&lt;script&gt;" in html


@pytest.mark.parametrize("answer, dropped", [("no", False), ("yes", True)])
def test_finish_asks_before_dropping(shell, db, monkeypatch, answer, dropped):
    llmops_magics.create_index("f", TEXTS[:4], db=db)
    m = llmops_magics.migration("f", db=db, log=False)
    m.start("minilm-cls")
    m.backfill(batch=4, progress=False)
    m.cutover()
    asked = []
    monkeypatch.setattr("builtins.input", lambda prompt: asked.append(prompt) or answer)  # the user's keyboard
    if dropped:
        shell.run_line_magic("lance_migrate", f"finish f --db {db}")
    else:
        with pytest.raises(UsageError, match="confirm with --yes"):
            shell.run_line_magic("lance_migrate", f"finish f --db {db}")
    assert "drops the old vector column of 'f'" in asked[0]
    assert ("vector" not in open_raw(db, "f").schema.names) is dropped
