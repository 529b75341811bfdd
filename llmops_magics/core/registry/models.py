"""Models registered in the MLflow Model Registry without copying their weights.

A registration is MLflow 3's external-model path: an MLflow run holds the manifest (see
:mod:`.manifest`), a ``LoggedModel`` tagged ``mlflow.model.isExternal`` carries the same
manifest, and a registered model version points at it. The weights stay where they are.
:data:`MODELS` is the model kind of the registry (see :mod:`.base`): the MLflow calls
behind model aliases and tags. Resolving a ref through the pins first is :mod:`.resolve`.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ...config import DEFAULT_CHAT_REF, DEFAULT_EMBEDDING_REF, Settings, settings
from ...errors import BadInput, ModelNotFound
from .. import events
from ..display import esc, html_table, text_table
from ..tracking import (
    bounded_command,
    client,
    experiment_id,
    is_not_found,
    mlflow_errors,
    origin_tags,
    read_artifact,
    terminate,
)
from ..tracking.links import MODEL_VERSIONS_TAG
from .base import RegistryKind
from .common import now_iso, short, who
from .manifest import MANIFEST, FileDigest, ModelRef, describe_files, from_manifest, manifest_digest, same_version
from .refs import Ref, check_alias_name, check_name, parse_ref

_cache_lock = threading.Lock()
_versions: dict[tuple[str, str, int], ModelRef] = {}  # versions are immutable: cache them


@dataclass(frozen=True)
class ModelRegistration:
    """What ``%llm_model register`` did."""

    model: ModelRef
    created: bool
    alias: str | None = None
    bytes_hashed: int = 0
    shown: bool = False

    @property
    def message(self) -> str:
        m = self.model
        head = f"registered {m.label}" if self.created else f"unchanged: still {m.label}"
        if self.shown:
            head = m.label
        size = sum(f.size for f in m.files)
        text = (
            f"{head} · {m.kind} · base {m.base} ({len(m.files)} files, {size / 1e6:.0f} MB, digest {short(m.digest)})"
        )
        if not self.shown:
            text += f" · hashed {self.bytes_hashed / 1e6:.0f} MB"
        if m.adapter_path:
            text += f" · adapter {Path(m.adapter_path).name} ({short(m.adapter_digest)})"
        if self.alias:
            text += f" · {self.alias} -> {m.version}"
        return text

    def __str__(self) -> str:
        return self.message

    def _repr_mimebundle_(self, include=None, exclude=None):
        return {"text/plain": self.message, "text/html": f"<div class='llmops-model'>{esc(self.message)}</div>"}


@dataclass(frozen=True)
class ModelList:
    """The registered models (``%llm_model list``)."""

    rows: tuple

    _HEADERS = ["name", "latest", "kind", "aliases", "base", "digest"]

    def _repr_mimebundle_(self, include=None, exclude=None):
        if not self.rows:
            text = "no models registered: %llm_model register NAME --base default"
            return {"text/plain": text, "text/html": f"<div>{esc(text)}</div>"}
        rows = [list(r) for r in self.rows]
        return {"text/plain": text_table(self._HEADERS, rows), "text/html": html_table(self._HEADERS, rows)}


# ---------------------------------------------------------------- registry


@bounded_command
def register_model(
    name: str,
    base: str = DEFAULT_CHAT_REF,
    *,
    revision: str | None = None,
    adapter: str | None = None,
    params=None,
    alias: str | None = None,
    kind: str = "chat",
    message: str | None = None,
    cfg: Settings | None = None,
) -> ModelRegistration:
    """Register a model version that points at files on disk (nothing is copied).

    The Python twin of ``%llm_model register NAME --base PATH_OR_DEFAULT [--revision R]
    [--adapter PATH] [--param k=v ...] [--alias A] [--kind chat|embedding]``.

    A version is created only when the digests, kind, revision or params differ from the
    latest version's; otherwise the latest is returned (``created`` False).

    Returns
    -------
    ModelRegistration
    """
    cfg = cfg or settings()
    name = check_name(name, "model name")
    if name in (DEFAULT_CHAT_REF, DEFAULT_EMBEDDING_REF):
        raise BadInput(f"{name!r} is the embedded default model's name: pick another (e.g. chat)")
    if alias is not None:
        check_alias_name(alias)
    started_ms = int(time.time() * 1000)  # the registration run spans the hashing too
    manifest, hashed = describe_files(name, base, revision=revision, adapter=adapter, params=params, kind=kind, cfg=cfg)
    latest = _latest(name, cfg)
    created = latest is None or not same_version(latest, manifest)
    model = _create_version(name, manifest, message, cfg, started_ms) if created else latest
    if created:
        events.emit(
            events.ModelRegistered(
                name=name,
                version=model.version,
                model_kind=model.kind,
                digest=model.digest,
                base_digest=model.base_digest,
                adapter_digest=model.adapter_digest,
            )
        )
    if alias is not None:
        MODELS.move_alias(name, alias, model.version, cfg=cfg)
    return ModelRegistration(model, created, alias, hashed)


def _create_version(name: str, manifest: dict, message: str | None, cfg: Settings, started_ms: int) -> ModelRef:
    # deferred: mlflow is heavy; only a new version needs its model-spec helpers
    from mlflow.entities import LoggedModelStatus
    from mlflow.models.utils import get_external_mlflow_model_spec

    c = client(cfg)
    exp = experiment_id(cfg=cfg)
    digest = manifest_digest(manifest)
    manifest = {**manifest, "registered_by": who(cfg), "registered_at": now_iso()}
    text = json.dumps(manifest, indent=1)
    tags = {
        "llmops.kind": manifest["kind"],
        "llmops.digest": digest,
        "llmops.base": manifest["base"]["ref"],
        "llmops.base_digest": manifest["base"]["digest"],
        "llmops.adapter_digest": (manifest["adapter"] or {}).get("digest") or "",
    }
    with mlflow_errors(f"register model {name}", cfg):
        existing = _registered(name, cfg)
        if existing is None:
            # No description: the message is the version's. The model's own description is
            # the user's (and the alias history block), never overwritten by a registration.
            c.create_registered_model(name, tags={"llmops.kind": manifest["kind"]})
        # Who registered it, from which notebook and cell, as every run of ours says.
        run_tags = {**origin_tags(cfg), "llmops.kind": "model_registration", **tags}
        run = c.create_run(exp, run_name=f"register {name}", start_time=started_ms, tags=run_tags)
        run_id = run.info.run_id
        c.log_text(run_id, text, MANIFEST)
        # MLflow 3's external model: a LoggedModel whose artifacts (weights) live elsewhere,
        # finalized at once, with an MLmodel spec so the registry accepts it.
        lm = c.create_logged_model(
            exp,
            name=name,
            source_run_id=run_id,
            model_type=manifest["kind"],
            tags={"mlflow.model.isExternal": "true", **tags},
            params={k: str(v)[:6000] for k, v in manifest["params"].items()},
        )
        with tempfile.TemporaryDirectory() as tmp:
            get_external_mlflow_model_spec(lm).save(os.path.join(tmp, "MLmodel"))
            Path(tmp, MANIFEST).write_text(text)
            c.log_model_artifacts(lm.model_id, tmp)
        c.finalize_logged_model(lm.model_id, LoggedModelStatus.READY)
        # run_id given explicitly: without it MLflow looks the logged model up through the
        # global tracking URI, which is not ours.
        mv = c.create_model_version(
            name,
            source=lm.artifact_location,
            run_id=run_id,
            tags={**tags, "llmops.model_id": lm.model_id},
            description=message,
            model_id=lm.model_id,
            await_creation_for=0,
        )
        # What MLflow's own register_model writes: the run page of any run that takes this
        # logged model as an input lists the version under "Registered models".
        c.set_logged_model_tags(
            lm.model_id, {MODEL_VERSIONS_TAG: json.dumps([{"name": name, "version": str(mv.version)}])}
        )
        terminate(c, run_id, "FINISHED")
    model = from_manifest(int(mv.version), manifest)
    with _cache_lock:
        _versions[(cfg.resolved_tracking_uri, name, model.version)] = model
    return model


def _registered(name: str, cfg: Settings):
    """The registered model ``name`` when it is one of ours; None when there is none."""
    c = client(cfg)
    try:
        rm = c.get_registered_model(name)
    except Exception as e:
        if not is_not_found(e):
            raise
        # MLflow keeps a prompt as a registered model tagged mlflow.prompt.is_prompt, and its
        # client hides those from get_registered_model: ask the prompt side before saying
        # "no such model", since the name is taken all the same.
        if c.get_prompt(name) is not None:
            raise BadInput(f"{name!r} is a registered prompt, not a model: pick another model name") from None
        return None
    if "llmops.kind" not in (rm.tags or {}):
        raise BadInput(f"model {name!r} was not registered by %llm_model (no manifest): pick another name")
    return rm


def _load_version(name: str, version: int, cfg: Settings) -> ModelRef:
    key = (cfg.resolved_tracking_uri, name, int(version))
    with _cache_lock:
        if key in _versions:
            return _versions[key]
    c = client(cfg)
    with mlflow_errors(f"read model {name}/{version}", cfg):
        try:
            mv = c.get_model_version(name, str(version))
        except Exception as e:
            if not is_not_found(e):
                raise
            raise ModelNotFound(
                f"model {name} has no version {version} (versions: {_versions_of(name, cfg)})"
            ) from None
        if not mv.run_id or "llmops.kind" not in (mv.tags or {}):
            raise ModelNotFound(f"{name}/{version} was not registered by %llm_model (no manifest)")
        text = read_artifact(mv.run_id, MANIFEST, cfg)
        if text is None:
            raise ModelNotFound(f"{name}/{version} has no manifest in its run {mv.run_id}: register it again")
        manifest = json.loads(text)
    model = from_manifest(int(mv.version), manifest)
    with _cache_lock:
        _versions[key] = model
    return model


@bounded_command
def load_version(name: str, version: int, cfg: Settings | None = None) -> ModelRef:
    """One version of a model registered by ``%llm_model`` (cached: versions never change)."""
    cfg = cfg or settings()
    if _registered(name, cfg) is None:
        raise _unknown_model(name, cfg)
    return _load_version(name, version, cfg)


def _versions_of(name: str, cfg: Settings) -> str:
    try:
        found = client(cfg).search_model_versions(f"name='{name}'", max_results=1000)
        numbers = sorted(int(v.version) for v in found)
        return ", ".join(map(str, numbers[-10:])) or "none"
    except Exception:  # only decorates a not-found message: never hide that one behind another
        return "unknown"


def _latest(name: str, cfg: Settings) -> ModelRef | None:
    with mlflow_errors(f"read model {name}", cfg):
        if _registered(name, cfg) is None:
            return None
        found = list(
            client(cfg).search_model_versions(f"name='{name}'", order_by=["version_number DESC"], max_results=1)
        )
    return _load_version(name, int(found[0].version), cfg) if found else None


def registered_models(cfg: Settings | None = None) -> list:
    """The registered models that carry a manifest (ours), newest first."""
    cfg = cfg or settings()
    with mlflow_errors("list models", cfg):
        found = client(cfg).search_registered_models(max_results=1000)
    return sorted((m for m in found if "llmops.kind" in (m.tags or {})), key=lambda m: m.name)


def _unknown_model(name: str, cfg: Settings) -> ModelNotFound:
    names = [m.name for m in registered_models(cfg)]
    known = f"registered models: {', '.join(names[:20])}" if names else "no models registered yet"
    return ModelNotFound(
        f"unknown model {name!r} ({known}): give 'default', 'default-embedding', "
        f"a local model folder, or register it with %llm_model register {name} --base ..."
    )


class ModelKind(RegistryKind):
    """Models: versions in MLflow's Model Registry, aliases and tags on the registered model.

    A version's files live on disk, so a model can drift without the registry moving.
    """

    name = "model"
    not_found = ModelNotFound

    def _version_by_alias(self, c, name: str, alias: str):
        return c.get_model_version_by_alias(name, alias)

    def _set_alias(self, c, name: str, alias: str, version: int) -> None:
        c.set_registered_model_alias(name, alias, str(version))

    def _set_tag(self, c, name: str, key: str, value: str) -> None:
        c.set_registered_model_tag(name, key, value)

    def _entity(self, c, name: str):
        return c.get_registered_model(name)

    def _set_description(self, c, name: str, text: str) -> None:
        c.update_registered_model(name, description=text)

    def load(self, name: str, version: int, cfg: Settings) -> ModelRef:
        return load_version(name, version, cfg)

    def find(self, ref: Ref, cfg: Settings) -> ModelRef:
        return find_model(ref, cfg)

    def changed_files(self, found: ModelRef, cfg: Settings) -> list[str]:
        return found.changed_files(cfg)

    def file_stats(self, found: ModelRef) -> dict:
        return found.file_stats()

    def from_data(self, data: dict) -> ModelRef:
        return ModelRef(**{**data, "files": tuple(FileDigest(**f) for f in data.get("files") or ())})


MODELS = ModelKind()


@bounded_command
def find_model(ref, cfg: Settings | None = None) -> ModelRef:
    """Resolve a model ref in the registry (ignoring pins): version, alias or latest."""
    cfg = cfg or settings()
    ref = parse_ref(ref, "model") if isinstance(ref, str) else ref
    if _registered(ref.name, cfg) is None:
        raise _unknown_model(ref.name, cfg)
    if ref.version is not None:
        return _load_version(ref.name, ref.version, cfg)
    if ref.alias is not None:
        version = MODELS.alias_target(ref.name, ref.alias, cfg=cfg)
        if version is None:
            raise _no_alias(ref, cfg)
        return _load_version(ref.name, version, cfg)
    latest = _latest(ref.name, cfg)
    if latest is None:
        raise ModelNotFound(f"model {ref.name} has no versions: register one with %llm_model register")
    return latest


def _no_alias(ref: Ref, cfg: Settings) -> ModelNotFound:
    with mlflow_errors(f"read model {ref.name}", cfg):
        aliases = sorted(client(cfg).get_registered_model(ref.name).aliases or {})
    listed = f"aliases: {', '.join(aliases)}" if aliases else "it has no aliases"
    return ModelNotFound(
        f"model {ref.name} has no alias {ref.alias!r} ({listed}): "
        f"set it with %llm_alias model {ref.name} {ref.alias} VERSION"
    )


@bounded_command
def list_models(cfg: Settings | None = None) -> ModelList:
    """The Python twin of ``%llm_model list``."""
    cfg = cfg or settings()
    rows = []
    for rm in registered_models(cfg):
        latest = _latest(rm.name, cfg)
        if latest is None:
            continue
        aliases = ", ".join(f"{a}->{v}" for a, v in sorted((rm.aliases or {}).items()))
        rows.append((rm.name, latest.version, latest.kind, aliases, latest.base, short(latest.digest)))
    return ModelList(tuple(rows))


@bounded_command
def show_model(ref: str, cfg: Settings | None = None) -> ModelRegistration:
    """The Python twin of ``%llm_model show REF``: one version and its manifest."""
    return ModelRegistration(find_model(ref, cfg), created=False, shown=True)
