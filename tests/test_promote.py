"""The promotion gate (issue 20): aliases move only on a recorded shadow run, on a real MLflow store.

Shadow runs are written as ``%%shadow`` writes them (tags and params through
``core/tracking.log_run``) where the behaviour under test is the gate; one test promotes on
a real ``shadow()`` run of the default model compared with itself.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from registry_helpers import mlflow_client, one_line, sqlite_store, store, uniq  # noqa: F401  (fixtures)

import llmops_magics
from llmops_magics import settings
from llmops_magics.core.promote import gate_run, promote
from llmops_magics.core.promote.promotion import check, commit, plan
from llmops_magics.core.promote.winshare import win_share
from llmops_magics.core.registry.aliases import alias_history, alias_target, move_alias
from llmops_magics.core.registry.models import MODELS, register_model
from llmops_magics.core.registry.pins import check_pins, pin
from llmops_magics.core.review.verdicts import ReviewVerdict, to_table
from llmops_magics.core.tracking import client, log_run
from llmops_magics.errors import AliasProtected, AliasRace, BadInput, PinDrift, PromotionRefused


def _models(name: str, n: int = 3, **kw) -> list[int]:
    """``n`` versions of the default model (one per param value) and champion at 1."""
    versions = [register_model(name, "default", params=[f"note=v{i}"], **kw).model.version for i in range(n)]
    move_alias("model", name, "champion", versions[0])
    return versions


def _shadow_run(
    name, primary, candidate, *, verdict="equivalent", n_cases=60, digest=None, change="different", extra=None
) -> str:
    """A shadow run with the tags and params ``%%shadow`` records for two model versions."""
    cfg = settings()
    params = {"n_cases": n_cases, **(extra or {})}
    for role, v in (("primary", primary), ("candidate", candidate)):
        params[f"{role}_model_version"] = f"{name}/{v}"
        params[f"{role}_model_digest"] = (digest or {}).get(role) or MODELS.load(name, v, cfg).digest
    tags = {"llmops.kind": "shadow", "llmops.verdict": verdict, "llmops.change": change}
    return log_run(run_name=f"shadow {name}", tags=tags, params=params, metrics={}, cfg=cfg)


def _votes(run_id: str, winners_by_reviewer: dict[str, list[str]]) -> None:
    """Each reviewer's verdicts on cases 0.. as ``%llm_review`` records them."""
    for reviewer, winners in winners_by_reviewer.items():
        rows = [
            ReviewVerdict(i, "left", w, "primary", reviewer=reviewer, at=f"2026-01-01T00:00:{i:02d}.000000Z")
            for i, w in enumerate(winners)
        ]
        client().log_dict(run_id, to_table(rows), f"review/verdicts/{reviewer}.json")


def test_refused_without_a_shadow_run_names_the_command(sqlite_store, uniq):
    name = uniq("chat")
    _models(name, 2)
    with pytest.raises(PromotionRefused) as e:
        promote("model", name, 2, to="champion")
    msg = str(e.value)
    assert one_line(msg)
    assert f"no shadow run compared {name}/1 (champion now) with {name}/2" in msg
    assert f"%%shadow --primary {name}@champion --candidate {name}/2" in msg
    assert alias_target("model", name, "champion") == 1


def test_refused_when_the_run_compared_other_versions_or_the_alias_moved(sqlite_store, uniq):
    name = uniq("chat")
    _models(name, 3)
    other = _shadow_run(name, 3, 2)
    with pytest.raises(PromotionRefused, match=rf"shadow run {other[:8]} compared {name}/3 with {name}/2; run") as e:
        promote("model", name, 2, to="champion", min_cases=10)
    assert "moved" not in str(e.value)
    # Champion pointed to 3 when a run compared it with 2; it moved back to 1 since.
    move_alias("model", name, "champion", 3)
    move_alias("model", name, "champion", 1)
    with pytest.raises(PromotionRefused, match=r"\(champion pointed to 3 and was moved to 1 since\)"):
        promote("model", name, 2, to="champion", min_cases=10)
    assert alias_target("model", name, "champion") == 1


def test_refused_when_the_run_also_changed_the_prompt(sqlite_store, uniq):
    name = uniq("chat")
    _models(name, 2)
    prompts = {"primary_prompt": "ask/1", "primary_prompt_digest": "a" * 64}
    both = _shadow_run(name, 1, 2, extra={**prompts, "candidate_prompt": "ask/2", "candidate_prompt_digest": "b" * 64})
    with pytest.raises(PromotionRefused) as e:
        promote("model", name, 2, to="champion", min_cases=10)
    assert one_line(str(e.value))
    assert f"shadow run {both[:8]} also changed the prompt (ask/1 vs ask/2)" in str(e.value)
    same = {**prompts, "candidate_prompt": "ask/1", "candidate_prompt_digest": "a" * 64}
    run = _shadow_run(name, 1, 2, extra=same)
    assert promote("model", name, 2, to="champion", min_cases=10).decision.run_id == run


def test_refused_when_a_digest_differs_or_files_changed(sqlite_store, uniq, tmp_path, lora_adapter):
    name = uniq("chat")
    _models(name, 2)
    _shadow_run(name, 1, 2, digest={"candidate": "f" * 64})
    with pytest.raises(PromotionRefused, match=f"compared {name}/2 with digest ffffffffffff"):
        promote("model", name, 2, to="champion", min_cases=10)

    adapter = tmp_path / "adapter"
    shutil.copytree(lora_adapter, adapter)
    tuned = register_model(name, "default", adapter=str(adapter)).model.version
    _shadow_run(name, 1, tuned)
    weights = next(p for p in adapter.iterdir() if p.suffix == ".safetensors")
    with open(weights, "r+b") as f:  # the adapter replaced on disk after registration
        f.seek(-1, os.SEEK_END)
        last = f.read(1)
        f.seek(-1, os.SEEK_END)
        f.write(bytes([last[0] ^ 1]))
    with pytest.raises(PromotionRefused, match=f"files of model {name}/{tuned} changed on disk"):
        promote("model", name, tuned, to="champion", min_cases=10)
    assert alias_target("model", name, "champion") == 1


def test_accepted_on_a_matching_equivalent_run_and_the_history_cites_it(store, uniq):
    name = uniq("chat")
    _models(name, 2)
    move_alias("model", name, "challenger", 2)
    _shadow_run(name, 1, 2, verdict="worse")  # an older run: the newest decides
    time.sleep(0.01)
    run_id = _shadow_run(name, 1, 2, verdict="equivalent", change="different")
    done = promote("model", name, "challenger", to="champion")
    assert str(done) == f"promoted model {name}: champion 1 -> 2 on shadow run {run_id[:8]} (equivalent, 60 cases)"
    bundle = done._repr_mimebundle_()
    assert bundle["text/plain"] == str(done) and "<div" in bundle["text/html"]
    assert alias_target("model", name, "champion") == 2
    last = alias_history("model", name, "champion").moves[-1]
    assert (last.run_id, last.evidence, last.promotion) == (run_id, "shadow run", True)
    assert f"promoted on shadow run {run_id[:8]}" in last.line()
    assert f"promoted on shadow run {run_id[:8]}" in mlflow_client().get_registered_model(name).description
    # Promoting what is there already moves nothing.
    assert promote("model", name, 2, to="champion").move is None


def test_require_better_and_min_cases(sqlite_store, uniq):
    name = uniq("chat")
    _models(name, 2)
    _shadow_run(name, 1, 2, verdict="equivalent", n_cases=12)
    with pytest.raises(PromotionRefused, match="--require better needs better"):
        promote("model", name, 2, to="champion", require="better", min_cases=10)
    with pytest.raises(PromotionRefused, match="12 cases, --min-cases needs 50"):
        promote("model", name, 2, to="champion")
    assert promote("model", name, 2, to="champion", min_cases=12).move.to_version == 2


def test_review_lower_bound_decides(sqlite_store, uniq):
    name = uniq("chat")
    _models(name, 3)
    weak = _shadow_run(name, 1, 2)
    _votes(weak, {"ann": ["primary", "candidate"] * 10, "bob": ["tie"] * 20})
    with pytest.raises(PromotionRefused, match="lower bound below --min-win-rate 0.5"):
        promote("model", name, 2, to="champion", min_cases=10, review=True, min_win_rate=0.5)
    strong = _shadow_run(name, 1, 3)
    _votes(strong, {"ann": ["candidate"] * 18 + ["primary", "skip"], "bob": ["candidate", "tie"] * 10})
    done = promote("model", name, 3, to="champion", min_cases=10, review=True)
    assert done.decision.win.low >= 0.4 and done.decision.win.cases == 20
    assert alias_history("model", name, "champion").moves[-1].evidence == "shadow run + review"


def test_win_share_bound_is_calibrated():
    # No real preference (votes drawn 50/50): a gate at 0.5 passes about 2.5% of reviews
    # (measured 3.1% at 40 cases: the votes are discrete); a planted preference passes.
    runs = 1000
    passes = sum(win_share(list(np.random.default_rng(s).choice([0.0, 1.0], size=40))).low >= 0.5 for s in range(runs))
    assert passes / runs <= 0.04
    planted = sum(
        win_share(list(np.random.default_rng(s).choice([0.0, 1.0], size=60, p=[0.25, 0.75]))).low >= 0.5
        for s in range(100)
    )
    assert planted >= 90
    # Every voted case alike: the bootstrap is a point, the bound is not (two wins prove little).
    assert win_share([1.0, 1.0]).low < 0.4 and win_share([1.0] * 30).low > 0.85


def test_force_needs_why_and_is_recorded(sqlite_store, uniq):
    name = uniq("chat")
    _models(name, 2)
    with pytest.raises(BadInput, match="--force needs a reason"):
        promote("model", name, 2, to="champion", force=True)
    done = promote("model", name, 2, to="champion", force=True, why="hotfix for   ticket 42")
    assert str(done).startswith(f"forced model {name}: champion 1 -> 2")
    last = alias_history("model", name, "champion").moves[-1]
    assert last.forced_why == "hotfix for ticket 42" and "forced: hotfix for ticket 42" in last.line()


def test_protected_alias_refuses_plain_moves_and_pin_check_flags_a_ui_move(sqlite_store, uniq):
    name = uniq("chat")
    llmops_magics.configure(protected_aliases=["champion"])
    versions = _models(name, 3)  # champion's first setting is allowed
    with pytest.raises(AliasProtected) as e:
        move_alias("model", name, "champion", 2)
    assert one_line(str(e.value)) and "%llm_promote" in str(e.value) and "--force --why" in str(e.value)
    with pytest.raises(AliasProtected):
        register_model(name, "default", params=["note=new"], alias="champion")
    assert move_alias("model", name, "champion", 2, force=True, why="rollback drill").forced_why == "rollback drill"
    pin("model", f"{name}@champion")
    assert check_pins()  # put there by a recorded forced move
    # Someone moves it in the MLflow UI: no record.
    mlflow_client().raw.set_registered_model_alias(name, "champion", str(versions[2]))
    pin("model", f"{name}@champion")
    with pytest.raises(PinDrift, match=f"model {name}.*protected alias champion points to 3 but no recorded promotion"):
        check_pins()
    # The fix the message names records who vouched for it, and the check passes again.
    assert move_alias("model", name, "champion", 3) is None, "nothing to move, nothing recorded"
    vouched = move_alias("model", name, "champion", 3, force=True, why="checked the UI move")
    assert (vouched.from_version, vouched.to_version, vouched.forced_why) == (3, 3, "checked the UI move")
    assert check_pins()


_PROMOTER = textwrap.dedent(
    """
    import sys, time
    import llmops_magics
    from llmops_magics.config import settings
    from llmops_magics.core.promote.promotion import check, commit, plan
    from llmops_magics.errors import LlmopsError

    uri, name, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
    llmops_magics.configure(tracking_uri=uri)
    cfg = settings()
    p = plan("model", name, 2, to="champion", cfg=cfg)
    decision = check(p, require="equivalent", min_cases=10, min_win_rate=0.4, review=False, run_id=None, cfg=cfg)
    time.sleep(max(0.0, start - time.time()))  # both checked the same evidence; now both commit
    try:
        commit(p, decision=decision, cfg=cfg)
        print("won")
    except LlmopsError as e:
        print(f"{type(e).__name__}: {e}")
    """
)


def test_two_processes_promoting_at_once_one_wins(store, uniq, tmp_path, monkeypatch):
    # A busy shared machine: registering on the server takes longer than the default budget.
    monkeypatch.setenv("LLMOPS_MLFLOW_TIMEOUT_S", "120")  # the two promoting processes too
    llmops_magics.configure(mlflow_timeout_s=120)
    name = uniq("chat")
    _models(name, 2)
    _shadow_run(name, 1, 2)
    script = tmp_path / "promoter.py"
    script.write_text(_PROMOTER)
    start = time.time() + 30  # importing llmops_magics and mlflow takes seconds on a busy machine
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), settings().resolved_tracking_uri, name, str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err[-2000:]
        outs.append(out.strip())
    assert sorted(o == "won" for o in outs) == [False, True], outs
    lost = next(o for o in outs if o != "won")
    assert one_line(lost) and lost.startswith("AliasRace: "), lost
    promotions = [m for m in alias_history("model", name, "champion").moves if m.promotion]
    assert len(promotions) == 1 and alias_target("model", name, "champion") == 2


def test_commit_refuses_an_alias_that_moved_after_the_check(sqlite_store, uniq):
    name = uniq("chat")
    _models(name, 3)
    _shadow_run(name, 1, 2)
    cfg = settings()
    p = plan("model", name, 2, to="champion", cfg=cfg)
    decision = check(p, require="equivalent", min_cases=10, min_win_rate=0.4, review=False, run_id=None, cfg=cfg)
    move_alias("model", name, "champion", 3)  # another notebook, between the check and the write
    with pytest.raises(AliasRace, match="moved from 1 to 3"):
        commit(p, decision=decision, cfg=cfg)
    assert alias_target("model", name, "champion") == 3


def _gate(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LLMOPS_TRACKING_URI": settings().resolved_tracking_uri}
    cmd = [sys.executable, "-m", "llmops_magics.cli", "gate", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180)


def test_gate_cli_exit_codes(sqlite_store, uniq):
    name = uniq("chat")
    _models(name, 2)
    run_id = _shadow_run(name, 1, 2, verdict="equivalent", n_cases=20)
    assert gate_run(run_id).ok and not gate_run(run_id, require="better").ok
    ok = _gate(run_id)
    assert ok.returncode == 0 and one_line(ok.stdout) and ok.stdout.startswith("pass: "), ok
    better = _gate(run_id, "--require", "better")
    assert better.returncode == 1 and "--require better needs better" in better.stdout
    assert _gate(run_id, "--min-cases", "21").returncode == 1
    unknown = _gate("0" * 32)
    assert unknown.returncode == 2 and "no MLflow run" in unknown.stderr
    plain = log_run(run_name="not shadow", tags={"llmops.kind": "llm"}, params={}, metrics={})
    assert _gate(plain).returncode == 2
    assert _gate(run_id, "--require", "maybe").returncode == 2


def test_llm_promote_magic_in_a_shell(shell, sqlite_store, uniq):
    from IPython.core.error import UsageError

    name = uniq("chat")
    _models(name, 2)
    with pytest.raises(UsageError, match="PromotionRefused: no shadow run compared"):
        shell.run_cell(f"%llm_promote model {name} 2 --to champion")
    with pytest.raises(UsageError, match="--force needs a reason"):
        shell.run_cell(f"%llm_promote model {name} 2 --to champion --force")
    run_id = _shadow_run(name, 1, 2, n_cases=5)
    done = shell.run_cell(f"%llm_promote model {name} 2 --to champion --min-cases 5 --run {run_id}")
    assert str(done) == f"promoted model {name}: champion 1 -> 2 on shadow run {run_id[:8]} (equivalent, 5 cases)"
    shell.run_cell("%config LlmopsMagics.protected_aliases = ['champion']")
    with pytest.raises(UsageError, match="AliasProtected"):
        shell.run_cell(f"%llm_alias model {name} champion 1")
    shell.run_cell(f'%llm_alias model {name} champion 1 --force --why "roll back"')
    history = shell.run_cell(f"%llm_alias --history model {name}")
    text = history._repr_mimebundle_()["text/plain"]
    assert f"promoted on shadow run {run_id[:8]}" in text and "forced: roll back" in text


def test_promote_on_a_real_shadow_run(sqlite_store, uniq):
    from llmops_magics import shadow

    name = uniq("chat")
    _models(name, 2)
    result = shadow(
        ["What is the capital of France?", "Name a colour.", "Say hello."],
        primary=f"{name}@champion",
        candidate=f"{name}/2",
        max_tokens=8,
        backend="transformers",
    )
    assert result.label == "equivalent", result
    done = promote("model", name, 2, to="champion", min_cases=3)
    assert done.run_id == result.run_id
    assert alias_history("model", name, "champion").moves[-1].run_id == result.run_id
