"""One parse path for every magic: shell quoting, one frozen command, one-line usage errors.

The magics under test are the registered ones (``MAGICS``), so a magic added later fails
here until it reads its line through ``magics.args.parse_command`` and has a case below.
The core function each magic calls is replaced by a recorder: what is under test is what
reaches core, not what core does with it. A few end-to-end checks follow.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from dataclasses import dataclass, field

import pytest
from IPython.core.error import UsageError
from registry_helpers import one_line, sqlite_store, uniq  # noqa: F401

from llmops_magics.core.registry.prompts import register_prompt
from llmops_magics.core.tracking import client
from llmops_magics.core.vectors.migration import STEPS
from llmops_magics.magics import MAGICS
from llmops_magics.magics import args as magic_args
from llmops_magics.magics.lance import STEP_OPTIONS, MigrateCommand


def registered() -> list[tuple[str, str]]:
    """(``line`` or ``cell``, name) of every registered magic; ``%%shadow`` is both."""
    return sorted((kind, name) for cls in MAGICS for kind in ("line", "cell") for name in cls.magics[kind])


def module_of(name: str):
    """The module whose magic class defines ``name`` (where it calls ``parse_command``)."""
    cls = next(c for c in MAGICS if name in c.magics["line"] or name in c.magics["cell"])
    return sys.modules[cls.__module__]


def magic_id(kind: str, name: str) -> str:
    return ("%%" if kind == "cell" else "%") + name


@dataclass
class Case:
    """A magic line with quoted values and the exact call it must make to core."""

    kind: str
    name: str
    line: str
    calls: str  # "module.attribute" the magic calls (patched with a recorder)
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)  # each listed keyword, exactly
    cell: str = ""
    user_ns: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{magic_id(self.kind, self.name)} {self.line}"


M = "llmops_magics.magics"
CASES = [
    Case(
        "cell",
        "llm",
        "--model 'my chat' --system 'Answer in one word.' --prompt \"summarize@production\""
        " --var \"text=Paris is big\" --var style='very terse' --max-tokens '8'",
        f"{M}.llm.run_llm",
        ("What is the capital of France?",),
        {
            "model": "my chat",
            "system": "Answer in one word.",
            "prompt": "summarize@production",
            "variables": {"text": "Paris is big", "style": "very terse"},
            "max_tokens": "8",
            "log": True,
        },
        cell="What is the capital of France?",
    ),
    Case(
        "cell",
        "llm_prompt",
        "'summarize' -m 'shorter answers' --alias \"production\" --response-format '{\"type\": \"object\"}'",
        f"{M}.prompt.register_prompt",
        ("summarize", "Summarize: {{text}}"),
        {"message": "shorter answers", "alias": "production", "response_format": '{"type": "object"}'},
        cell="Summarize: {{text}}",
    ),
    Case(
        "line",
        "llm_model",
        "register 'my chat' --base '/models/my base' --param 'note=two words' -m \"first cut\" --alias 'champion'",
        f"{M}.model.register_model",
        ("my chat", "/models/my base"),
        {"params": ["note=two words"], "message": "first cut", "alias": "champion", "kind": "chat"},
    ),
    Case("line", "llm_model", "show 'my chat/1'", f"{M}.model.show_model", ("my chat/1",)),
    Case(
        "line",
        "llm_pin",
        "prompt 'summarize@production'",
        "llmops_magics.core.registry.pins.pin",
        ("prompt", "summarize@production"),
    ),
    Case(
        "line",
        "llm_pin",
        "--load '/data/my lock.json'",
        "llmops_magics.core.registry.pins.load_lock",
        ("/data/my lock.json",),
    ),
    Case(
        "line",
        "llm_alias",
        "model 'my chat' \"champion\" '2'",
        f"{M}.alias.move_alias",
        ("model", "my chat", "champion", "2"),
    ),
    Case(
        "line",
        "llm_promote",
        "model 'my chat' \"challenger\" --to 'champion' --require better --min-cases 3 --force --why 'hot fix'",
        f"{M}.promote.promote",
        (),
        {
            "kind": "model",
            "name": "my chat",
            "version": "challenger",
            "to": "champion",
            "require": "better",
            "min_cases": "3",
            "force": True,
            "why": "hot fix",
        },
    ),
    Case(
        "line",
        "llm_watch",
        "'support app' --scorer is_polite --scorer 'my.scorers:refund_judge' --since 30d --by day "
        "--filter \"tags.route = 'refunds'\" --split 'tags.variant' --canary b --no-drift",
        f"{M}.watch.watch",
        (),
        {
            "experiment": "support app",
            "scorers": ["polite scorer object", "my.scorers:refund_judge"],
            "since": "30d",
            "by": "day",
            "filter": "tags.route = 'refunds'",
            "split": "tags.variant",
            "canary": "b",
            "drift": False,
        },
        user_ns={"is_polite": "polite scorer object"},
    ),
    Case(
        "line",
        "llm_alias",
        "--history prompt \"my prompt\" 'production'",
        f"{M}.alias.alias_history",
        ("prompt", "my prompt", "production"),
    ),
    Case(
        "cell",
        "shadow",
        "--primary 'chat@champion' --candidate \"chat@challenger\" --name 'my run' --system \"Be brief.\""
        " --candidate-engine-args 'dtype=bfloat16, enforce_eager=false' --threshold 'max_differing_rate=0.1'",
        f"{M}.shadow.run_shadow",
        ("hi\nho",),
        {
            "primary": "chat@champion",
            "candidate": "chat@challenger",
            "name": "my run",
            "system": "Be brief.",
            "primary_engine_args": {},
            "candidate_engine_args": {"dtype": "bfloat16", "enforce_eager": False},
            "max_differing_rate": 0.1,
            "log": True,
        },
        cell="hi\nho",
    ),
    Case(
        "line",
        "shadow",
        "--primary chat@champion --candidate chat@challenger --inputs 'questions' --name \"my run\" --n '1'",
        f"{M}.shadow.run_shadow",
        (["a", "b"],),
        {"name": "my run", "n": "1"},
        user_ns={"questions": ["a", "b"]},
    ),
    Case(
        "line",
        "adapter_check",
        "'/data/my adapter' --base 'my base' --old-base \"old base\" --probes '/data/my probes.txt'"
        " --max-lora-rank '32'",
        f"{M}.adapter.check_adapter",
        (),
        {
            "adapter": "/data/my adapter",
            "base": "my base",
            "old_base": "old base",
            "probes": "/data/my probes.txt",
            "max_lora_rank": "32",
            "behavior": True,
        },
    ),
    Case(
        "line",
        "adapter_check",
        "./adapter --base 'my base' --probes \"my_probes\" --static-only --no-log",
        f"{M}.adapter.check_adapter",
        (),
        {"probes": ["probe one", "probe two"], "behavior": False, "log": False},
        user_ns={"my_probes": ["probe one", "probe two"]},
    ),
    Case(
        "line",
        "lance_migrate",
        "start 'my table' --to 'minilm-cls' --column \"vector two\" --db '/data/my db'",
        f"{M}.lance.run_step",
        ("start", "my table"),
        {"db": "/data/my db", "to": "minilm-cls", "column": "vector two"},
    ),
    Case(
        "line",
        "lance_migrate",
        "shadow docs --queries '{tmp}/my queries.txt' --k '3'",
        f"{M}.lance.run_step",
        ("shadow", "docs"),
        {"queries": ["first query", "second query"], "k": "3", "labels": None},
    ),
    Case(
        "line",
        "lineage",
        "export --openlineage '/data/my dir/ol.jsonl' --all",
        f"{M}.lineage.export_openlineage",
        ("/data/my dir/ol.jsonl",),
        {"all_sessions": True},
    ),
    Case("line", "lineage", "cell '12'", f"{M}.lineage.lineage_cell", ("12",)),
    Case(
        "line",
        "llm_engines",
        "--log 'my engine' --lines '20'",
        f"{M}.engines.engine_log",
        ("my engine",),
        {"lines": 20},
    ),
    Case("line", "llm_engines", '--stop "my engine"', f"{M}.engines.stop_engine", ("my engine",)),
]


class Returned:
    """What a recorded core call returns: enough for every magic to bind and show it."""

    model = prompt = "recorded"

    def __str__(self) -> str:
        return "recorded"


def test_every_registered_magic_has_a_case():
    assert {(c.kind, c.name) for c in CASES} == set(registered())


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_quoted_values_reach_core_unquoted(shell, monkeypatch, tmp_path, case):
    (tmp_path / "my queries.txt").write_text("first query\nsecond query\n")
    shell.user_ns.update(case.user_ns)
    target, _, attribute = case.calls.rpartition(".")
    seen, parsed = [], []
    monkeypatch.setattr(sys.modules[target], attribute, lambda *a, **kw: seen.append((a, kw)) or Returned())
    # The magic's own name for the shared parser: spying on it proves the line went through it.
    module = module_of(case.name)
    monkeypatch.setattr(module, "parse_command", lambda *a: parsed.append(magic_args.parse_command(*a)) or parsed[-1])

    line = case.line.replace("{tmp}", str(tmp_path))
    if case.kind == "cell":
        shell.run_cell_magic(case.name, line, case.cell)
    else:
        shell.run_line_magic(case.name, line)

    assert len(seen) == 1, f"{case.calls} was not called once"
    call_args, call_kwargs = seen[0]
    assert call_args == case.args
    assert {k: call_kwargs.get(k, "<missing>") for k in case.kwargs} == case.kwargs
    assert len(parsed) == 1, "the magic did not read its line through magics.args.parse_command"
    command = parsed[0]
    assert dataclasses.is_dataclass(command)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(command, dataclasses.fields(command)[0].name, None)
    hints = typing.get_type_hints(type(command))
    if "kind" in hints:  # a magic with subcommands names them in a Literal
        assert typing.get_origin(hints["kind"]) is typing.Literal and command.kind in typing.get_args(hints["kind"])


BAD_QUOTING = ["x 'unclosed", 'x --flag "unclosed', "x \\"]


@pytest.mark.parametrize("line", BAD_QUOTING)
@pytest.mark.parametrize("kind, name", registered(), ids=[magic_id(k, n) for k, n in registered()])
def test_unbalanced_quoting_is_one_usage_error(shell, kind, name, line):
    source = f"%%{name} {line}\nbody" if kind == "cell" else f"%{name} {line}"
    with pytest.raises(UsageError) as err:
        shell.run_cell(source)
    text = str(err.value)
    assert one_line(text), text
    assert text.startswith("cannot split the line: ") and text.endswith("; check the quotes"), text
    assert "No closing quotation" in text or "No escaped character" in text, text


@pytest.mark.parametrize("kind, name", registered(), ids=[magic_id(k, n) for k, n in registered()])
def test_parse_errors_stay_one_line_without_short_errors(shell, kind, name):
    """``short_errors = False`` brings core tracebacks back; a mistyped line is still one line."""
    shell.run_line_magic("config", "LlmopsMagics.short_errors = False")
    with pytest.raises(UsageError) as err:
        if kind == "cell":
            shell.run_cell_magic(name, "x 'unclosed", "body")
        else:
            shell.run_line_magic(name, "x 'unclosed")
    assert one_line(str(err.value)) and "No closing quotation" in str(err.value)


@pytest.mark.parametrize(
    "source, message",
    [
        ("%lance_migrate backfill docs --to 'minilm-cls'", "backfill takes no --to"),
        ("%lance_migrate shadow docs", "shadow needs --queries VAR|FILE"),
        ("%lineage export", "%lineage export needs --openlineage PATH"),
        ("%lineage 'cell' 1 2", "cannot read %lineage 'cell 1 2'"),
        ("%llm_engines --stop a --log b", "give --stop NAME or --log NAME, not both"),
        ("%llm_alias prompt 'my prompt' production", "give ALIAS and VERSION"),
        ("%llm_model register", "needs a NAME"),
        ("%llm_pin --check --save", "choose one of --check, --save"),
        ("%%llm --var 'no equals sign'\nhi", "BadInput: --var 'no equals sign' is not NAME=VALUE"),
        ("%%shadow --primary a --candidate b --primary-engine-args '{\"dtype\": '\nhi", "is not valid JSON"),
        ("%shadow --primary a --candidate b --candidate-engine-args 'dtype'", "'dtype' is not NAME=VALUE"),
    ],
)
def test_a_malformed_line_is_one_usage_error_before_core(shell, source, message):
    with pytest.raises(UsageError) as err:
        shell.run_cell(source)
    assert message in str(err.value) and one_line(str(err.value)), str(err.value)


def test_migration_subcommands_are_the_core_steps():
    assert typing.get_args(typing.get_type_hints(MigrateCommand)["kind"]) == STEPS
    assert set(STEP_OPTIONS) == set(STEPS)


def test_help_flags_behave_as_before(shell):
    """``magic_arguments`` parsers have no -h: the line is read like any other."""
    with pytest.raises(UsageError, match="^unrecognized arguments: -h$"):
        shell.run_line_magic("llm_pin", "-h")
    with pytest.raises(UsageError, match="^the following arguments are required: step, table$"):
        shell.run_line_magic("lance_migrate", "--help")


# End to end: the unquoted values are what the stores and files show.


def test_lineage_exports_to_a_quoted_path_with_a_space(shell, tmp_path):
    folder = tmp_path / "my dir"
    folder.mkdir()
    shell.run_cell("a = 1")
    result = shell.run_cell(f"%lineage export --openlineage '{folder}/ol.jsonl'")
    assert (folder / "ol.jsonl").is_file() and result.events >= 1


def test_pins_save_and_load_a_quoted_lockfile_path(shell, sqlite_store, uniq, tmp_path):
    name = uniq("quoted")
    register_prompt(name, "Summarize: {{text}}")
    shell.run_cell(f"%llm_pin prompt '{name}'")
    lock = tmp_path / "my lock.json"
    shell.run_cell(f'%llm_pin --save "{lock}"')
    assert lock.is_file()
    shell.run_cell("%llm_pin --clear")
    pins = shell.run_cell(f"%llm_pin --load '{lock}'")
    assert pins.get("prompt", name).version == 1


def test_lance_migrate_names_the_unquoted_table(shell, tmp_path):
    with pytest.raises(UsageError, match="no LanceDB table 'my table'"):
        shell.run_cell(f"%lance_migrate status 'my table' --db '{tmp_path}/my db'")


def test_shadow_run_name_has_no_quotes(shell):
    result = shell.run_cell(
        "%%shadow --primary default --candidate default --max-tokens 4 --backend vllm --name 'my run'\nhi"
    )
    assert result.name == "my run"
    assert client().get_run(result.run_id).info.run_name == "shadow my run"
