"""``%%llm`` and the settings, as a notebook user types them."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError

from llmops_magics import settings
from llmops_magics.errors import ModelNotFound


def test_llm_cell_magic_answers_and_binds_result(shell):
    result = shell.run_cell("%%llm --max-tokens 24\nWhat is the capital of France?")
    assert "Paris" in result.answer
    assert shell.user_ns["_llm"] is result
    bundle = result._repr_mimebundle_()
    assert "Paris" in bundle["text/plain"] and "backend" in bundle["text/plain"]
    assert "text/html" in bundle


def test_html_repr_escapes_model_output(shell):
    result = shell.run_cell("%%llm --max-tokens 8 --no-log\nSay hi")
    result.results[0].text = "<img src=x onerror=alert(1)><script>alert(2)</script>"
    html = result._repr_mimebundle_()["text/html"]
    assert "<img" not in html and "<script" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_config_traits_reach_core_settings(shell, tmp_path):
    shell.run_line_magic("config", f"LlmopsMagics.home = {str(tmp_path)!r}")
    shell.run_line_magic("config", "LlmopsMagics.backend = 'transformers'")
    shell.run_line_magic("config", "LlmopsMagics.engine_args = {'enforce_eager': True}")
    assert settings().home == tmp_path
    assert settings().backend == "transformers"
    assert settings().engine_args == {"enforce_eager": True}
    assert settings().resolved_tracking_uri == f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_environment_variables_are_defaults(monkeypatch):
    from llmops_magics import config

    monkeypatch.setenv("LLMOPS_BACKEND", "transformers")
    monkeypatch.setenv("LLMOPS_DEFAULT_MODEL", "/models/x")
    s = config.reset()
    assert s.backend == "transformers" and s.default_model == "/models/x"


def test_python_api_configure_rejects_unknown_backend():
    import llmops_magics
    from llmops_magics.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown backend 'tgi'"):
        llmops_magics.configure(backend="tgi")
    with pytest.raises(ConfigError, match="needs an endpoint"):
        llmops_magics.configure(backend="openai")


@pytest.mark.parametrize(
    "cell, message",
    [
        ("%%llm --model /no/such/model\nhi", "ModelNotFound: unknown model '/no/such/model'"),
        ("%%llm --max-tokens 0\nhi", "--max-tokens 0: must be a whole number of at least 1 (e.g. --max-tokens 64)"),
        ("%%llm --temperature -1\nhi", "--temperature -1: must be a number of at least 0 (e.g. --temperature 0.7)"),
        ("%%llm\n   \n", "the cell is empty"),
        ("%%llm --max-tokens lots\nhi", "--max-tokens lots: must be a whole number"),
        ("%%llm --backend tgi\nhi", "invalid choice"),
        ("%%llm --model default-embedding\nhi", "is an embedding model"),
    ],
)
def test_bad_input_is_one_line(shell, cell, message):
    with pytest.raises(UsageError) as err:
        shell.run_cell(cell)
    text = str(err.value)
    assert message in text
    assert "\n" not in text.strip()
    assert "Traceback" not in text


def test_short_errors_false_brings_the_real_exception_back(shell):
    shell.run_line_magic("config", "LlmopsMagics.short_errors = False")
    with pytest.raises(ModelNotFound):
        shell.run_cell("%%llm --model /no/such/model\nhi")


def test_bad_trait_value_is_refused(shell, caplog):
    before = settings().backend
    shell.run_line_magic("config", "LlmopsMagics.backend = 'bogus'")
    assert settings().backend == before
    assert "expected any of ['auto', 'vllm', 'transformers', 'openai']" in caplog.text


def test_unload_removes_magics(shell):
    shell.run_line_magic("unload_ext", "llmops_magics")
    assert "llm" not in shell.ip.magics_manager.magics["cell"]
    shell.run_line_magic("load_ext", "llmops_magics")
    assert "llm" in shell.ip.magics_manager.magics["cell"]


def test_quoted_options_lose_their_quotes(shell):
    result = shell.run_cell(
        "%%llm --max-tokens 8 --no-log --system 'Answer in one word.'\nWhat is the capital of France?"
    )
    # The system turn the model saw has no stray quotes: same prompt size as the Python call.
    import llmops_magics

    direct = llmops_magics.llm("What is the capital of France?", max_tokens=8, log=False, system="Answer in one word.")
    assert result.prompt_tokens == direct.prompt_tokens


def test_results_link_their_run_when_a_ui_is_configured(shell):
    plain = shell.run_cell("%%llm --max-tokens 8\nSay hi")
    assert "MLflow run:" not in plain._repr_mimebundle_()["text/plain"]
    shell.run_line_magic("config", "LlmopsMagics.ui_url = 'http://127.0.0.1:5000'")
    result = shell.run_cell("%%llm --max-tokens 8\nSay hi")
    from llmops_magics.core.tracking import client

    experiment = client().get_run(result.run_id).info.experiment_id
    url = f"http://127.0.0.1:5000/#/experiments/{experiment}/runs/{result.run_id}"
    bundle = result._repr_mimebundle_()
    assert f"MLflow run: {url}" in bundle["text/plain"]
    assert f"href='{url}'" in bundle["text/html"]
