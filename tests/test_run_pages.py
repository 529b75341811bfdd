"""What a run page shows: the prompt and model versions the work used (MLflow's own links),
the work's real times and status, where it ran from, and no path of this machine.

Real stores: the embedded sqlite store, a real ``mlflow server`` behind a proxy that can
fall silent, the real model registry; one ``%%llm``-twin call on vLLM.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from registry_helpers import uniq  # noqa: E402,F401  (fixture)
from servers import CutOffProxy  # noqa: E402

import llmops_magics  # noqa: E402
from llmops_magics import config  # noqa: E402
from llmops_magics.core import tracking  # noqa: E402
from llmops_magics.core.registry.models import register_model  # noqa: E402
from llmops_magics.core.registry.prompts import register_prompt  # noqa: E402


@pytest.fixture(autouse=True)
def no_source():
    """Each test starts with no cell recorded (the source is process state)."""
    tracking.set_source(None, None)
    yield
    tracking.set_source(None, None)


def _two_versions(name: str, cfg=None) -> tuple[str, str]:
    """Two registered versions of one model on the default weights (serving params differ)."""
    v1 = register_model(name, "default", cfg=cfg).model.version
    v2 = register_model(name, "default", params={"max_model_len": 2048}, cfg=cfg).model.version
    assert v1 != v2
    return str(v1), str(v2)


def _linked(run, cfg=None) -> tuple[list, set]:
    """(prompt versions from the run's tag, registered versions of its logged-model inputs)."""
    c = tracking.client(cfg)
    prompts = [(p["name"], p["version"]) for p in json.loads(run.data.tags.get(tracking.LINKED_PROMPTS_TAG, "[]"))]
    versions = set()
    for mi in run.inputs.model_inputs:
        for v in json.loads(c.get_logged_model(mi.model_id).tags.get("mlflow.modelVersions", "[]")):
            versions.add((v["name"], str(v["version"])))
    return prompts, versions


def _machine_paths(cfg) -> list[str]:
    from llmops_magics.core.paths import _roots

    return [prefix for prefix, _ in _roots(cfg, None)] + [str(cfg.model_cache.resolve())]


def _assert_no_machine_path(run, cfg) -> None:
    shown = {**run.data.params, **run.data.tags}
    for prefix in _machine_paths(cfg):
        bad = {k: v for k, v in shown.items() if prefix in v}
        assert not bad, f"{prefix} appears in {bad}"


def test_a_run_links_every_prompt_and_model_version_it_used(uniq):
    chat, summarize, judge = uniq("chat"), uniq("summarize"), uniq("judge")
    v1, v2 = _two_versions(chat)
    register_prompt(summarize, "Summarize: {{text}}")
    register_prompt(judge, "Which is better? {{a}} {{b}}")
    run_id = tracking.log_run(
        run_name="links",
        tags={"llmops.kind": "test"},
        params={},
        metrics={},
        prompts=[(summarize, 1), (judge, "1"), (summarize, "1")],
        # A model without a registered version (a local folder, "default") has nothing to link.
        models=[(chat, v1), (chat, v2), (uniq("never-registered"), "1")],
    )
    run = tracking.client().get_run(run_id)
    prompts, versions = _linked(run)
    assert prompts == [(summarize, "1"), (judge, "1")]
    assert versions == {(chat, v1), (chat, v2)}
    assert len(run.inputs.model_inputs) == 2


def test_a_run_kept_during_an_outage_keeps_its_links_times_and_status(mlflow_server, uniq, tmp_path):
    proxy = CutOffProxy(mlflow_server.uri)
    try:
        cfg = config.configure(tracking_uri=proxy.uri, home=tmp_path / "home", mlflow_timeout_s=3)
        chat, prompt = uniq("chat"), uniq("summarize")
        v1, v2 = _two_versions(chat, cfg)
        register_prompt(prompt, "Summarize: {{text}}", cfg=cfg)
        tracking.set_source(str(Path.cwd() / "notebooks" / "work.ipynb"), 12)
        started = time.time() - 7.5  # the work: 7.5 s, then MLflow falls silent
        ended = time.time()
        proxy.silence()
        with pytest.raises(tracking.RunKept) as kept:
            tracking.log_run(
                run_name="kept",
                tags={},
                params={"p": 1},
                metrics={"m": 1.0},
                start_time=started,
                end_time=ended,
                status="FAILED",
                prompts=[(prompt, 1)],
                models=[(chat, v1), (chat, v2)],
                cfg=cfg,
            )
        tracking.set_source(None, None)  # the replay runs later, from another cell
        time.sleep(1.0)
        proxy.restore()
        report = tracking.ship_pending(cfg)
        assert report.shipped == 1 and not report.error, report
        (found,) = tracking.client(cfg).search_runs(
            [tracking.experiment_id(cfg=cfg)], filter_string=f"tags.`llmops.run_key` = '{kept.value.key}'"
        )
        run = tracking.client(cfg).get_run(found.info.run_id)  # a search leaves out the model inputs
        assert run.info.start_time == int(started * 1000) and run.info.end_time == int(ended * 1000)
        assert run.info.status == "FAILED"
        prompts, versions = _linked(run, cfg)
        assert prompts == [(prompt, "1")] and versions == {(chat, v1), (chat, v2)}
        assert run.data.tags["mlflow.source.name"] == "notebooks/work.ipynb · cell 12"
        assert run.data.tags["llmops.lineage.notebook"] == "notebooks/work.ipynb"
        assert run.data.tags["llmops.lineage.cell"] == "12"
    finally:
        proxy.close()
        config.reset()


def test_a_cell_names_its_notebook_and_number_on_the_runs_it_writes(shell, monkeypatch):
    notebook = Path.cwd() / "analysis" / "explore.ipynb"
    monkeypatch.setenv("JPY_SESSION_NAME", str(notebook))
    shell.run_cell("x = 1")
    shell.run_cell(
        "from llmops_magics.core import tracking\n"
        "run_id = tracking.log_run(run_name='from a cell', tags={}, params={}, metrics={})"
    )
    count = shell.ip.execution_count - 1  # the cell that wrote the run
    run = tracking.client().get_run(shell.ip.user_ns["run_id"])
    tags = run.data.tags
    assert tags["mlflow.source.type"] == "NOTEBOOK"
    assert tags["llmops.lineage.notebook"] == "analysis/explore.ipynb"
    assert tags["llmops.lineage.cell"] == str(count)
    assert tags["mlflow.source.name"] == f"analysis/explore.ipynb · cell {count}"


def test_a_registration_run_names_its_author_notebook_and_cell_and_spans_the_hashing(uniq, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    tracking.set_source(str(Path.cwd() / "notebooks" / "register.ipynb"), 4)
    t0 = time.time()
    name = uniq("chat")
    registration = register_model(name, "default")
    t1 = time.time()
    c = tracking.client()
    exp = tracking.experiment_id(tracking.EXPERIMENT)
    found = c.search_runs([exp], filter_string=f"attributes.run_name = 'register {name}'")
    assert registration.created and len(found) == 1
    run = found[0]
    assert run.data.tags["mlflow.user"] == "alice"
    assert run.data.tags["mlflow.source.name"] == "notebooks/register.ipynb · cell 4"
    # From before the files were described (hashed) to after the version existed.
    assert t0 * 1000 - 1 <= run.info.start_time and run.info.end_time <= t1 * 1000 + 1


def test_a_migration_step_run_spans_its_work_and_names_no_machine_path(tmp_path):
    from llmops_magics.core.vectors.migration import Migration

    cfg = llmops_magics.settings()
    texts = [f"Sentence number {i} about bees and honey." for i in range(40)]
    llmops_magics.create_index("spans", texts)
    t0 = time.time()
    step = Migration("spans").plan("minilm-cls")
    measured = time.time() - t0
    run = tracking.client().get_run(step.run_id)
    spanned = (run.info.end_time - run.info.start_time) / 1000
    # The step's own work (loading an embedder, embedding a sample) is nearly all of it;
    # only writing the run itself falls outside.
    assert measured - 0.5 <= spanned <= measured + 0.01, (spanned, measured)
    assert run.info.status == "FINISHED"
    assert run.data.tags["llmops.lancedb_uri"] == "<home>/lancedb"
    _assert_no_machine_path(run, cfg)


def test_an_adapter_check_run_shows_paths_as_people_share_them(tmp_path, monkeypatch):
    from adapter_helpers import make_adapter, tiny_llama

    monkeypatch.chdir(tmp_path)  # the notebook's folder
    old = tiny_llama(tmp_path / "bases" / "old", vocab=4096)
    new = tiny_llama(tmp_path / "bases" / "new", vocab=4096, seed=3)
    adapter = make_adapter(old, tmp_path / "adapters" / "tone")
    report = llmops_magics.check_adapter(str(adapter), base=str(new), behavior=False)
    run = tracking.client().get_run(report.run_id)
    assert run.data.params["adapter"] == "adapters/tone"
    assert run.data.params["base"] == "bases/new"
    assert run.data.params["old_base"] == "bases/old"
    _assert_no_machine_path(run, llmops_magics.settings())


def test_llm_run_links_its_prompt_and_model_and_spans_the_generation(uniq):
    chat, prompt = uniq("chat"), uniq("summarize")
    v1 = str(register_model(chat, "default").model.version)
    register_prompt(prompt, "Summarize in five words: {{text}}")
    t0 = time.time()
    result = llmops_magics.llm(
        "Bees make honey from nectar.", model=f"{chat}/{v1}", prompt=prompt, max_tokens=8, backend="vllm"
    )
    assert result.run_id and not result.warnings, result.warnings
    run = tracking.client().get_run(result.run_id)
    prompts, versions = _linked(run)
    assert prompts == [(prompt, "1")] and versions == {(chat, v1)}
    spanned = (run.info.end_time - run.info.start_time) / 1000
    assert result.latency_s <= spanned + 0.01 and spanned <= time.time() - t0
    assert run.data.params["model_path"].startswith("~/") or run.data.params["model_path"].startswith("<")
    _assert_no_machine_path(run, llmops_magics.settings())
