"""What a cell used and made, read from its typed events.

``derive`` is the only reader of a record's events: the display bundle, the MLflow
session table, the OpenLineage export and ``%lineage`` all summarize through it.
Events are parsed back into :mod:`..events` dataclasses first, so a field nothing
emits cannot be read here, and a kind this version does not know is skipped.
"""

from __future__ import annotations

from .. import events as ev


def _str(v):
    return None if v is None else str(v)


def _ref(name, version=None, digest=None) -> dict:
    return {"name": name, "version": _str(version), "digest": digest}


def _label_ref(label: str, digest: str | None = None) -> dict:
    """``chat/2`` (how a generation names its model) as a ref."""
    name, _, version = str(label).partition("/")
    return _ref(name, version or None, digest)


def _action(action: str, kind: str, name: str, **fields) -> dict:
    """One piece of registry work: ``registered`` / ``pinned`` a version, or an ``alias`` move."""
    item = {"action": action, "kind": kind, "name": name, "version": None, "alias": None, "from": None, "to": None}
    item.update(fields)
    item["version"] = _str(item["version"])
    return item


def _add(items: list, item: dict) -> None:
    if item not in items:
        items.append(item)


class _Cell:
    """The lists one cell's lineage carries, filled event by event."""

    def __init__(self):
        self.prompts, self.models, self.runs, self.tables = [], [], [], []
        self.shadow, self.checks, self.aliases = [], [], []
        # Registry work in the order it happened: what the summary and the badges name.
        self.registry: list[dict] = []
        self.tokens = {"prompt": 0, "completion": 0}
        self.latency: float | None = None

    def run(self, e: ev.Event, run_id: str | None, experiment_id=None) -> None:
        if run_id:
            _add(self.runs, {"run_id": run_id, "experiment_id": _str(experiment_id), "kind": e.kind})

    def add(self, e: ev.Event) -> None:
        if isinstance(e, ev.Generation):
            self.run(e, e.run_id, e.experiment_id)
            if e.prompt:
                _add(self.prompts, _ref(e.prompt.get("name"), e.prompt.get("version"), e.prompt.get("digest")))
            model = {**_label_ref(e.model, e.model_digest), "backend": e.backend}
            model.update({k: v for k, v in (("dtype", e.dtype), ("device", e.device)) if v})  # how it was served
            _add(self.models, model)
            self.tokens["prompt"] += int(e.prompt_tokens or 0)
            self.tokens["completion"] += int(e.completion_tokens or 0)
            if e.latency_s is not None:
                self.latency = (self.latency or 0.0) + float(e.latency_s)
        elif isinstance(e, ev.PromptRegistered):
            _add(self.prompts, _ref(e.name, e.version, e.digest))
            _add(self.registry, _action("registered", "prompt", e.name, version=e.version))
        elif isinstance(e, ev.ModelRegistered):
            _add(self.models, {**_ref(e.name, e.version, e.digest), "backend": None})
            _add(self.registry, _action("registered", "model", e.name, version=e.version))
        elif isinstance(e, ev.Pinned):
            # A pin is a use of that exact version from this cell on.
            _add(self.prompts if e.registry == "prompt" else self.models, _ref(e.name, e.version, e.digest))
            _add(self.registry, _action("pinned", e.registry, e.name, version=e.version, alias=e.alias))
        elif isinstance(e, ev.AliasMoved):
            _add(self.aliases, {"kind": e.registry, "name": e.name, "alias": e.alias, "from": e.from_, "to": e.to})
            moved = {"from": _str(e.from_), "to": _str(e.to)}
            _add(self.registry, _action("alias", e.registry, e.name, alias=e.alias, **moved))
        elif isinstance(e, ev.ShadowRan):
            self.run(e, e.run_id)
            if e.prompt:  # "name/version" of the registered prompt both sides ran under
                _add(self.prompts, _label_ref(e.prompt))
            _add(self.shadow, {"name": e.name, "verdict": e.verdict, "run_id": e.run_id})
        elif isinstance(e, ev.AdapterChecked):
            self.run(e, e.run_id)
            _add(self.checks, {"adapter": e.adapter, "verdict": e.verdict, "run_id": e.run_id})
        elif isinstance(e, ev.MigrationStep):
            self.run(e, e.run_id)
            table = {"table": e.table, "version_before": e.version_before, "version_after": e.version_after}
            _add(self.tables, {**table, "step": e.step})
        elif isinstance(e, ev.TableWritten):
            table = {"table": e.table, "version_before": e.version_before, "version_after": e.version_after}
            _add(self.tables, {**table, "step": "write", "rows": e.rows})


def derive(records: list[dict]) -> dict:
    """Summarize a cell's stored events into the lists the display bundle carries."""
    cell = _Cell()
    for record in records:
        event = ev.parse(record)
        if event is None:
            continue
        try:
            cell.add(event)
        except (AttributeError, TypeError, ValueError):
            # A record read back from disk may hold a field of another shape (an older
            # version, a hand-edited spool): the rest of that event is skipped, never the cell.
            continue
    return {
        "prompts": cell.prompts,
        "models": cell.models,
        "runs": cell.runs,
        "tables": cell.tables,
        "shadow": cell.shadow,
        "adapter_checks": cell.checks,
        "aliases": cell.aliases,
        "registry": cell.registry,
        "tokens": cell.tokens,
        "latency_s": cell.latency,
        "summary": _summary(cell),
    }


def _label(ref: dict) -> str:
    return f"{ref['name']}/{ref['version']}" if ref.get("version") else str(ref.get("name"))


def _version(v) -> str:
    return f"v{v}" if v is not None else "new"


def alias_text(move: dict, *, short: bool = False) -> str:
    """An alias move as people say it: ``chat@champion 1 -> 2``, ``challenger -> 2`` (``short``:
    the cell registered that name, so the alias alone is clear), ``chat@old unset (was 1)``."""
    target = move["alias"] if short else f"{move['name']}@{move['alias']}"
    if move.get("to") is None:
        return f"{target} unset" + (f" (was {move['from']})" if move.get("from") is not None else "")
    if move.get("from") is None or str(move["from"]) == str(move["to"]):
        return f"{target} -> {move['to']}"
    return f"{target} {move['from']} -> {move['to']}"


def registry_text(actions: list[dict]) -> list[str]:
    """Registry work as summary parts: ``registered model chat/2``, ``challenger -> 2``,
    ``pinned prompt summarize/1``."""
    registered = {(a["kind"], a["name"]) for a in actions if a["action"] == "registered"}
    parts = []
    for a in actions:
        if a["action"] == "alias":
            parts.append(alias_text(a, short=(a["kind"], a["name"]) in registered))
        else:
            parts.append(f"{a['action']} {a['kind']} {_label(a)}")
    return parts


def _summary(cell: _Cell) -> str:
    # A version the cell registered or pinned is named once, by what was done to it.
    done = {(a["kind"], a["name"], a["version"]) for a in cell.registry if a["action"] != "alias"}
    parts = registry_text(cell.registry)
    parts += [f"prompt {_label(p)}" for p in cell.prompts if ("prompt", p["name"], p["version"]) not in done]
    parts += [f"model {_label(m)}" for m in cell.models if ("model", m["name"], m["version"]) not in done]
    parts += [f"shadow {s['name']} {s['verdict']}" for s in cell.shadow]
    parts += [f"adapter {c['adapter']} {c['verdict']}" for c in cell.checks]
    parts += [f"table {t['table']} {_version(t['version_before'])}→v{t['version_after']}" for t in cell.tables]
    parts += [f"run {r['run_id'][:8]}" for r in cell.runs]
    return " · ".join(parts)
