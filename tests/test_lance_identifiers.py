"""Column names Lance SQL must quote (``vec-2``, ``body text``, ``doc-id``) through every migration step.

Each step that names a column in a filter, a merge condition or ``sha256(...)`` used
to take the name as raw SQL, where ``vec-2`` reads as ``vec - 2`` and ``body text`` as
two words. The tables are real LanceDB tables, the embedders the real MiniLM ones.
"""

from __future__ import annotations

import numpy as np
import pytest
from IPython.core.error import UsageError
from test_migration import LABELS, QUERIES, TOPICS, open_raw

import llmops_magics
from llmops_magics.backends import lance
from llmops_magics.core.vectors import get_embedder, search_vector
from llmops_magics.errors import BadInput

ID, TEXT, NEW = "doc-id", "body text", "vec-2"
# 264 rows: enough for the index step to build a real IVF_PQ index (it skips below 256).
TEXTS = [f"{t} (note {i})" for i, t in enumerate(TOPICS * 33)]


@pytest.fixture
def db(tmp_path):
    return str(tmp_path / "lancedb")


def make_table(db, name, n):
    rows = [{ID: i, TEXT: t, "group": i % 3} for i, t in enumerate(TEXTS[:n])]
    llmops_magics.create_index(name, rows, db=db, id_column=ID, text_column=TEXT)


def rows_by_id(db, name) -> dict:
    return {r[ID]: r for r in open_raw(db, name).to_arrow().to_pylist()}


def exact_top(db, name, column, ref, query, k) -> list:
    """The ``k`` nearest ids of ``column`` by brute force in numpy (vectors are L2-normalized)."""
    rows = list(rows_by_id(db, name).values())
    sims = np.array([r[column] for r in rows], np.float32) @ get_embedder(ref).embed([query])[0]
    return [rows[i][ID] for i in np.argsort(-sims)[:k]]


def test_every_step_through_the_python_api(db, record_events):
    steps = record_events("migration_step")
    make_table(db, "q", len(TEXTS))
    m = llmops_magics.migration("q", db=db, log=False)

    assert m.plan("minilm-cls").details["rows"] == len(TEXTS)
    start = m.start("minilm-cls", column=NEW)
    assert start.details["column"] == NEW and start.details["start_tag"] == "llmops-vec-2-start-v1"
    assert m.state["digest_column"] == "vec-2__src"
    assert f"0/{len(TEXTS)} filled" in m.status().details[f"column {NEW}"]

    m.add([{TEXT: "owls hunt at night"}])  # a dual write: an auto id, both vectors, never stale
    owl = rows_by_id(db, "q")[len(TEXTS)]
    assert np.allclose(owl[NEW], get_embedder("minilm-cls").embed(["owls hunt at night"])[0], atol=1e-4)

    filled = m.backfill(batch=64, progress=False)
    assert filled.details["rows_embedded"] == len(TEXTS) and filled.details["rows_left"] == 0
    rows = rows_by_id(db, "q")
    ids = sorted(rows)
    want = get_embedder("minilm-cls").embed([rows[i][TEXT] for i in ids])
    assert np.allclose([rows[i][NEW] for i in ids], want, atol=1e-4)

    # An edit after embedding makes the row stale (sha256 of the quoted text column).
    open_raw(db, "q").update(where="`doc-id` = 5", values={TEXT: "edited: violins in the rain"})
    status = m.status().details
    assert status["stale_rows"] == 1 and f"{len(TEXTS) + 1}/{len(TEXTS) + 1} filled, 1 stale" in status[f"column {NEW}"]
    for step in (m.index, m.cutover):
        with pytest.raises(BadInput, match=r"^1 rows of 'vec-2' are stale"):
            step()
    assert m.backfill(batch=64, progress=False).details["rows_embedded"] == 1
    assert np.allclose(
        rows_by_id(db, "q")[5][NEW], get_embedder("minilm-cls").embed(["edited: violins in the rain"])[0], atol=1e-4
    )

    report = m.shadow(QUERIES, k=3, labels=LABELS)
    assert report.headline()["coverage"] == 1.0 and report.new_column == NEW
    for row in report.rows:  # brute force on both columns: the exact top-k of each model
        assert row["new_ids"] == exact_top(db, "q", NEW, "minilm-cls", row["query"], 3)
        assert row["old_ids"] == exact_top(db, "q", "vector", "default-embedding", row["query"], 3)

    built = m.index(min_rows=0)
    assert built.details["column"] == NEW and built.details["index_type"] == "IVF_PQ"
    assert [ix.index_type for ix in lance.indices_on(open_raw(db, "q"), NEW)] == ["IvfPq"]

    cut = m.cutover()
    assert cut.details["active_column"] == NEW and cut.details["tag"].startswith("llmops-vec-2-cutover-v")
    hit = llmops_magics.search("q", "kittens hunting", k=5, db=db)
    assert hit.column == NEW and hit.embedder.ref == "minilm-cls" and len(hit.rows) == 5
    assert m.search("kittens hunting", k=5).column == NEW

    back = m.rollback()  # after cutover: the old column is searched again, the new one kept
    assert back.details["active_column"] == "vector" and m.state["status"] == "started"
    hit = llmops_magics.search("q", "kittens hunting", k=3, db=db)
    assert hit.column == "vector" and hit.ids == exact_top(db, "q", "vector", "default-embedding", hit.query, 3)

    m.cutover()
    done = m.finish(confirm=True)
    assert done.details == {"dropped_column": "vector", "active_column": NEW}
    assert set(open_raw(db, "q").schema.names) == {ID, TEXT, "group", NEW}
    assert llmops_magics.search("q", "kittens hunting", k=1, db=db).column == NEW
    kinds = [e["step"] for e in steps]
    assert kinds == "plan start backfill backfill shadow index cutover rollback cutover finish".split()


def test_rollback_before_cutover_keeps_every_row(db):
    make_table(db, "r", 12)
    before = rows_by_id(db, "r")
    m = llmops_magics.migration("r", db=db, log=False)
    m.start("minilm-cls", column=NEW)
    m.backfill(batch=4, max_batches=2, progress=False)
    m.add([{ID: 100, TEXT: "owls hunt at night"}])
    open_raw(db, "r").delete("`doc-id` = 3")
    assert "/12 filled, 0 stale" in m.status().details[f"column {NEW}"]
    back = m.rollback()
    assert back.details["dropped_columns"] == "vec-2, vec-2__src" and back.details["rows"] == 12
    rows = rows_by_id(db, "r")
    assert set(rows) == set(before) - {3} | {100}
    assert all(rows[i] == before[i] for i in before if i != 3)
    assert m.state == {} and m.status().details["migration"] == "none"


def test_every_step_through_the_magic(shell, db):
    make_table(db, "mg", 10)
    shell.user_ns["qs"] = QUERIES[:2]
    run = lambda line: shell.run_line_magic("lance_migrate", f"{line} --db {db}")  # noqa: E731
    assert run("plan mg --to minilm-cls").details["rows"] == 10
    assert run("start mg --to minilm-cls --column vec-2").details["column"] == NEW
    assert run("backfill mg --batch 4").details["rows_embedded"] == 10
    assert run("status mg").details[f"column {NEW}"].endswith("10/10 filled, 0 stale")
    assert run("index mg").summary.startswith("skipped")  # checks every row is embedded and fresh first
    report = run("shadow mg --queries qs --k 3")
    assert report.coverage == 1.0 and [r["new_ids"] for r in report.rows] == [
        exact_top(db, "mg", NEW, "minilm-cls", q, 3) for q in QUERIES[:2]
    ]
    assert run("cutover mg").details["active_column"] == NEW
    assert llmops_magics.search("mg", "kittens", db=db).column == NEW
    assert run("rollback mg").details["active_column"] == "vector"
    assert llmops_magics.search("mg", "kittens", db=db).column == "vector"
    run("cutover mg")
    assert run("finish mg --yes").details["dropped_column"] == "vector"
    assert llmops_magics.search("mg", "kittens", k=1, db=db).embedder.ref == "minilm-cls"

    make_table(db, "mr", 6)
    run("start mr --to minilm-cls --column 'vec 2'")  # shell quoting: a name with a space
    run("backfill mr")
    assert run("rollback mr").details["dropped_columns"] == "vec 2, vec 2__src"
    assert len(rows_by_id(db, "mr")) == 6 and run("status mr").details["migration"] == "none"


@pytest.mark.parametrize("column", ["Vec-2", "select", "vec 2 (cls)"])
def test_names_with_capitals_keywords_and_punctuation(db, column):
    make_table(db, "n", 6)
    m = llmops_magics.migration("n", db=db, log=False)
    start = m.start("minilm-cls", column=column)
    assert all(c.isalnum() or c in "._-" for c in start.details["start_tag"])  # Lance's rule for tag names
    assert m.backfill(batch=4, progress=False).details["rows_left"] == 0
    m.cutover()
    hit = m.search("cats", k=1)
    assert hit.column == column and hit.ids == exact_top(db, "n", column, "minilm-cls", "cats", 1)
    m.rollback()
    m.rollback()
    assert column not in open_raw(db, "n").schema.names and m.state == {}


@pytest.mark.parametrize("column, why", [("vec.2", "'.' in its name"), ("vec`2", "'`' in its name")])
def test_a_name_lance_cannot_address_is_refused_before_anything_is_written(db, column, why):
    make_table(db, "bad", 4)
    m = llmops_magics.migration("bad", db=db, log=False)
    version = open_raw(db, "bad").version
    with pytest.raises(BadInput, match=f"LanceDB cannot use .* as a column \\({why}\\)"):
        m.start("minilm-cls", column=column)
    assert open_raw(db, "bad").version == version and m.state == {}
    assert not open_raw(db, "bad").tags.list()
    with pytest.raises(BadInput, match=r"as an id column \('\"' in its name\)"):
        llmops_magics.create_index("bad2", ["cats"], db=db, id_column='doc"id')


def test_magic_refuses_a_bad_name_in_one_line(shell, db):
    make_table(db, "b", 4)
    with pytest.raises(UsageError) as err:
        shell.run_line_magic("lance_migrate", f"start b --to minilm-cls --column vec.2 --db {db}")
    assert "LanceDB cannot use 'vec.2'" in str(err.value) and "\n" not in str(err.value).strip()


def test_the_id_index_on_a_quoted_column_is_found_not_rebuilt(db):
    """Lance lists the index on ``doc-id`` as ```doc-id```; each add looks it up first."""
    make_table(db, "ix", 8)
    m = llmops_magics.migration("ix", db=db, log=False)
    m.add(["owls hunt at night"])
    (first,) = lance.indices_on(open_raw(db, "ix"), ID)
    m.add(["bats hunt at dusk"])
    (second,) = lance.indices_on(open_raw(db, "ix"), ID)
    assert first.index_type == "BTree" and second.index_uuid == first.index_uuid
    assert lance.unindexed_rows(open_raw(db, "ix"), ID) == 2  # the two adds; not the row count (10)
    assert sorted(rows_by_id(db, "ix")) == list(range(10))


def test_search_vector_on_a_quoted_column(db):
    make_table(db, "v", 8)
    hit = search_vector("v", get_embedder().embed([TEXTS[2]])[0], k=1, db=db)
    assert hit.ids == [2] and hit.rows[0]["text"] == TEXTS[2]
