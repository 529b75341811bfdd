"""``%shadow --on ray`` / ``shadow(on="ray")`` on a real Ray head and real vLLM (issue 21).

Each test runs the same shadow on the kernel path and on Ray and holds the Ray run to
the kernel's: same verdict, same MLflow params (plus where it ran) and metrics.
Few cases and short answers: every Ray pass starts a vLLM engine in an actor.
"""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError
from ray_helpers import ray_address  # noqa: F401  (the session's Ray head)

import llmops_magics
from llmops_magics.core.shadow import ray_generate
from llmops_magics.core.tracking import client

pytestmark = pytest.mark.vllm

TOPICS = ["rivers", "volcanoes", "bread", "chess", "the moon", "bees", "trains", "tea", "glaciers", "owls"]
CASES = [f"Tell me one fact about {t}." for t in TOPICS]
# Params that name the run or say where it ran; every other param is the kernel run's.
PLACE = {"on", "ray_concurrency", "ray_cluster", "ray_batch_size", "ray_batches_per_side"}


def _run(run_id: str):
    return client().get_run(run_id).data


def _same_run(ray_result, kernel_result):
    """The Ray run records what the kernel run does, plus where it ran."""
    k, r = _run(kernel_result.run_id), _run(ray_result.run_id)
    assert set(r.params) - set(k.params) == PLACE - {"on"}
    assert set(k.params) - set(r.params) == set()
    assert k.params["on"] == "kernel" and r.params["on"] == "ray"
    differ = {p for p in k.params if k.params[p] != r.params[p]} - PLACE - {"name"}
    assert differ == set(), {p: (k.params[p], r.params[p]) for p in differ}
    assert set(r.metrics) == set(k.metrics)
    assert r.metrics["n_cases"] == ray_result.n_cases == kernel_result.n_cases
    assert r.metrics["differing_cases"] == len(ray_result.differing_cases)
    return k, r


def _shared(kernel, ray) -> tuple[int, int, int]:
    """(differing on the kernel, differing on Ray, differing on both)."""
    k, r = ({row["id"] for row in x.differing_cases} for x in (kernel, ray))
    return len(k), len(r), len(k & r)


def test_self_shadow_on_ray_is_equivalent_and_logs_like_the_kernel(ray_address, monkeypatch, capfd):  # noqa: F811
    kernel = llmops_magics.shadow(CASES, primary="default", candidate="default", max_tokens=16, name="self-kernel")
    # Several driver-cut batches per side (as a run past 256 cases has): both sides must
    # still get the same batches, so a model against itself differs nowhere.
    monkeypatch.setattr(ray_generate, "MAX_CHUNK", 4)
    capfd.readouterr()
    ray = llmops_magics.shadow(
        CASES, primary="default", candidate="default", max_tokens=16, name="self-ray", on="ray", address=ray_address
    )
    out, err = capfd.readouterr()
    assert ray.label == "equivalent", ray.verdict.reasons
    assert ray.differing_cases == [] and ray.n_cases == len(CASES)
    _, r = _same_run(ray, kernel)
    assert r.params["ray_concurrency"] == "1" and "127.0.0.1" in r.params["ray_cluster"]
    assert r.params["ray_batch_size"] == "4" and r.params["ray_batches_per_side"] == "3"
    assert r.metrics["differing_cases"] == 0
    # Nothing of Ray's or vLLM's reached the console (our own bar and status lines may).
    for noise in ("(raylet)", "core_worker", "INFO ", "WARNING", "Warning:", "ray.data", "Traceback"):
        assert noise not in out + err, (noise, (out + err)[-2000:])
    # The same model, the same single batch: Ray's answers are the kernel's.
    same = sum(a == b for a, b in zip(kernel.to_pandas()["primary_output"], ray.to_pandas()["primary_output"]))
    print(f"\nself-shadow: {same}/{len(CASES)} Ray answers equal the kernel's")


def test_lora_candidate_on_ray_gets_the_kernel_verdict(ray_address, lora_adapter):  # noqa: F811
    args = dict(primary="default", candidate=str(lora_adapter), max_tokens=16, adapter_mode="lora")
    kernel = llmops_magics.shadow(CASES, name="lora-kernel", **args)
    ray = llmops_magics.shadow(CASES, name="lora-ray", on="ray", address=ray_address, **args)
    assert ray.label == kernel.label, (kernel.verdict.reasons, ray.verdict.reasons)
    assert ray.differing_cases, "a random LoRA changes answers"
    _same_run(ray, kernel)
    on_kernel, on_ray, both = _shared(kernel, ray)
    print(f"\nLoRA candidate: verdict {ray.label}; differing cases kernel {on_kernel}, Ray {on_ray}, shared {both}")


def test_remote_ray_with_local_store_is_refused_before_connecting(shell):
    import time

    t0 = time.perf_counter()
    with pytest.raises(UsageError) as e:
        shell.run_cell(
            "%%shadow --on ray --address ray://10.255.0.1:10001 --primary default --candidate default\nhello"
        )
    message = str(e.value)
    assert "\n" not in message and "tracking_uri" in message and "sqlite" in message
    assert time.perf_counter() - t0 < 5  # refused before any connection attempt


@pytest.mark.parametrize(
    "options, expected",
    [
        ("--on gpu", "--on gpu: must be one of kernel, ray"),
        ("--on ray --concurrency 0", "--concurrency 0: must be a whole number of at least 1"),
        ("--on ray --concurrency two", "--concurrency two: must be a whole number of at least 1"),
        ("--concurrency 2", "--concurrency places work on Ray: add --on ray"),
    ],
)
def test_bad_placement_options_are_one_line(shell, options, expected):
    with pytest.raises(UsageError) as e:
        shell.run_cell(f"%%shadow {options} --primary default --candidate default\nhello")
    assert expected in str(e.value) and "\n" not in str(e.value)
