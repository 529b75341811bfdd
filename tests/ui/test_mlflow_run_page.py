"""A shadow run's page in the real MLflow UI (a real ``mlflow server``, Debian's Chromium):
it links the prompt version and both model versions the comparison used, shows the
comparison's real duration, and names no folder of this machine.
"""

from __future__ import annotations

import json
import re
import sys
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

QUESTIONS = ["Bees make honey from nectar.", "Rivers flow to the sea.", "Tea is brewed from leaves."]


def _shadow_of_two_versions(uri: str) -> dict:
    """chat/1 and chat/2 (the default weights, registered twice with different serving
    params) over a registered prompt version, timed from outside."""
    import llmops_magics
    from llmops_magics.core import tracking
    from llmops_magics.core.registry.models import register_model
    from llmops_magics.core.registry.prompts import register_prompt

    tag = uuid.uuid4().hex[:6]
    chat, prompt = f"chat-{tag}", f"summarize-{tag}"
    llmops_magics.configure(tracking_uri=uri)
    v1 = register_model(chat, "default").model.version
    v2 = register_model(chat, "default", params={"max_model_len": 2048}).model.version
    register_prompt(prompt, "Summarize in five words: {{text}}")
    t0 = time.time()
    result = llmops_magics.shadow(
        QUESTIONS, primary=f"{chat}/{v1}", candidate=f"{chat}/{v2}", prompt=prompt, max_tokens=32, name="page"
    )
    measured = time.time() - t0
    assert result.run_id and not result.warnings, result.warnings
    return {
        "experiment_id": tracking.experiment_of(result.run_id),
        "run_id": result.run_id,
        "measured_s": measured,
        "chat": chat,
        "versions": [str(v1), str(v2)],
        "prompt": prompt,
    }


def _seconds(text: str) -> float:
    """MLflow's formatDuration back to seconds ("812ms", "19.5s", "1.2min")."""
    value, unit = re.fullmatch(r"([\d.]+)(ms|s|min|h)", text.strip()).groups()
    return float(value) * {"ms": 0.001, "s": 1.0, "min": 60.0, "h": 3600.0}[unit]


def test_shadow_run_page_links_its_versions_with_real_duration_and_no_machine_paths(
    mlflow_server, mlflow_page, screenshot_dir
):
    from llmops_magics import settings
    from llmops_magics.core.tracking import current_user

    run = _shadow_of_two_versions(mlflow_server.uri)
    page = mlflow_page
    page.goto(f"{mlflow_server.uri}/#/experiments/{run['experiment_id']}/runs/{run['run_id']}")
    page.get_by_text("Registered prompts", exact=True).wait_for()
    prompt_link = page.locator(f"a:has-text('{run['prompt']}')").first
    prompt_link.wait_for()
    assert "/prompts/" in (prompt_link.get_attribute("href") or "")
    # Each registered version links to its model version page.
    for v in run["versions"]:
        link = page.locator(f"a[href*='/models/{run['chat']}/versions/{v}']").first
        link.wait_for()
        assert link.is_visible()

    duration = page.get_by_text("Duration", exact=True).locator("xpath=..").inner_text()
    shown = _seconds(duration.replace("Duration", "").strip())
    assert abs(shown - run["measured_s"]) <= 0.1 * run["measured_s"], (shown, run["measured_s"])

    # "Created by": the MLflow user (MLFLOW_TRACKING_USERNAME, else the login), not "—".
    created = page.get_by_text("Created by", exact=True).locator("xpath=..").inner_text()
    assert current_user() in created.replace("Created by", ""), created

    text = page.locator("body").inner_text()
    cfg = settings()
    machine = {str(Path.home()), sys.prefix, str(Path.cwd()), str(cfg.home), str(cfg.model_cache)}
    found = [p for p in machine if p and p != "/" and p in text]
    assert not found, f"machine paths on the run page: {found}"
    page.screenshot(path=str(Path(screenshot_dir) / "mlflow-run-page.png"), full_page=False)
