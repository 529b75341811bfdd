"""Models registered in the MLflow Model Registry without copying their weights.

A registration is MLflow 3's external-model path: an MLflow run holds the manifest
(``manifest.json``: base folder or hub id + revision, sha256 of every file, the adapter and
its digest, serving params, kind), a ``LoggedModel`` tagged ``mlflow.model.isExternal``
carries the same manifest, and a registered model version points at it. The weights stay
where they are; their digests say whether they are still the same bytes.

File digests are streamed and cached by (path, size, mtime) in the model cache, so
registering or pinning unchanged files again reads no weight bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from ...backends.base import Adapter
from ...backends.files import sha256_file
from ...config import DEFAULT_CHAT_REF, DEFAULT_EMBEDDING_REF, Settings, settings
from ...errors import BadInput, ModelNotFound
from .. import events
from ..display import esc, html_table, text_table
from ..generation.resolve import ResolvedModel, register_resolver
from ..tracking import (
    MlflowUnavailable,
    bounded_command,
    client,
    experiment_id,
    mlflow_errors,
    read_artifact,
    terminate,
)
from .common import now_iso, short, who
from .refs import check_alias_name, check_name, parse_ref

KINDS = ("chat", "embedding")
MANIFEST = "manifest.json"
_cache_lock = threading.Lock()
_versions: dict[tuple[str, str, int], ModelRef] = {}


@dataclass(frozen=True)
class FileDigest:
    """One file of a registered model: where it sits (base or adapter), size, sha256."""

    part: str
    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class ModelRef:
    """One immutable registered model version and what it is made of."""

    name: str
    version: int
    kind: str
    base: str
    base_path: str
    base_digest: str
    digest: str
    revision: str | None = None
    adapter_path: str | None = None
    adapter_digest: str | None = None
    params: dict = field(default_factory=dict)
    files: tuple = ()

    def __hash__(self):
        return hash((self.name, self.version, self.digest))

    @property
    def label(self) -> str:
        return f"{self.name}/{self.version}"

    def resolved(self, ref: str | None = None, *, via: str = "") -> ResolvedModel:
        """What a backend loads: the base folder plus the adapter, if any."""
        adapter = Adapter(f"{self.name}-v{self.version}", self.adapter_path) if self.adapter_path else None
        return ResolvedModel(
            ref or self.label,
            self.name,
            self.base_path,
            adapter,
            str(self.version),
            self.kind,
            dict(self.params),
            digest=self.digest,
            via=via,
        )

    def file_path(self, f: FileDigest) -> Path:
        return Path(self.adapter_path if f.part == "adapter" else self.base_path) / f.path

    def file_stats(self) -> dict:
        """path -> (size, mtime_ns) now: a cheap "did anything touch the files" snapshot."""
        out = {}
        for f in self.files:
            p = self.file_path(f)
            try:
                st = p.stat()
                out[str(p)] = (st.st_size, st.st_mtime_ns)
            except OSError:
                out[str(p)] = None
        return out

    def changed_files(self, cfg: Settings | None = None) -> list[str]:
        """Files whose bytes differ from the registration (re-hashes only touched files)."""
        cache = (cfg or settings()).model_cache
        changed = []
        for f in self.files:
            p = self.file_path(f)
            if not p.is_file():
                changed.append(f"{f.path} (missing)")
            elif p.stat().st_size != f.size or sha256_file(p, cache_dir=cache) != f.sha256:
                changed.append(f.path)
        return changed


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


# ---------------------------------------------------------------- files and digests


def _folder_files(root: Path) -> list[Path]:
    # Every file counts (config and tokenizer change behaviour as much as weights do);
    # hidden files and folders (.cache, .git) are bookkeeping, not the model.
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files.extend(Path(dirpath) / n for n in sorted(filenames) if not n.startswith("."))
    return files


def _digest_folder(part: str, root: Path, cfg: Settings, bar) -> tuple[list[FileDigest], str]:
    out = []
    for p in _folder_files(root):
        bar.set_postfix_str(p.name, refresh=False)
        out.append(
            FileDigest(
                part, p.relative_to(root).as_posix(), p.stat().st_size, sha256_file(p, cache_dir=cfg.model_cache)
            )
        )
        bar.update(out[-1].size)
    if not out:
        raise BadInput(f"{root} holds no files: give a model folder")
    h = hashlib.sha256()
    for f in out:
        h.update(f"{f.path}\0{f.size}\0{f.sha256}\n".encode())
    return out, h.hexdigest()


def _resolve_base(base: str, revision: str | None, kind: str, cfg: Settings) -> tuple[Path, str | None]:
    """(local folder, revision) for 'default', a folder, or a hub id already in the local cache."""
    if base in (DEFAULT_CHAT_REF, DEFAULT_EMBEDDING_REF):
        from ...backends.default_models import chat_model_dir, embedding_model_dir

        if kind == "embedding" or base == DEFAULT_EMBEDDING_REF:
            return embedding_model_dir(), revision
        return chat_model_dir(cfg.model_cache), revision
    path = Path(base).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file() and not (path / "modules.json").is_file():
            raise BadInput(f"{path} is not a model folder (no config.json): give the folder that holds the weights")
        return path.resolve(), revision
    if "/" in base and not base.startswith((".", "/", "~")):
        # A hub id: use the copy already in the local Hugging Face cache; never download.
        try:
            from huggingface_hub import snapshot_download

            local = Path(snapshot_download(base, revision=revision, local_files_only=True))
            return local, revision or local.name
        except Exception:
            pass
    raise BadInput(
        f"base {base!r} is not a local folder nor in the local Hugging Face cache "
        "(nothing is downloaded here): give 'default' or a model folder"
    )


def _parse_params(params) -> dict:
    if params is None:
        return {}
    if isinstance(params, dict):
        return dict(params)
    out = {}
    for item in params:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise BadInput(f"--param {item!r} is not KEY=VALUE (e.g. --param max_model_len=2048)")
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out


def _manifest(
    name, kind, base, base_path, revision, base_files, base_digest, adapter_path, adapter_files, adapter_digest, params
) -> dict:
    return {
        "schema": 1,
        "name": name,
        "kind": kind,
        "base": {
            "ref": base,
            "path": str(base_path),
            "revision": revision,
            "digest": base_digest,
            "files": [[f.path, f.size, f.sha256] for f in base_files],
        },
        "adapter": None
        if adapter_path is None
        else {
            "path": str(adapter_path),
            "digest": adapter_digest,
            "files": [[f.path, f.size, f.sha256] for f in adapter_files],
        },
        "params": params,
    }


def manifest_digest(manifest: dict) -> str:
    """sha256 of what a version *is* (contents, kind, params), not where its files sit."""
    core = {
        "kind": manifest["kind"],
        "params": manifest["params"],
        "base": {"revision": manifest["base"]["revision"], "digest": manifest["base"]["digest"]},
        "adapter": manifest["adapter"] and {"digest": manifest["adapter"]["digest"]},
    }
    return hashlib.sha256(json.dumps(core, sort_keys=True).encode()).hexdigest()


def _from_manifest(version: int, m: dict) -> ModelRef:
    files = [FileDigest("base", *f) for f in m["base"]["files"]]
    adapter = m.get("adapter")
    if adapter:
        files += [FileDigest("adapter", *f) for f in adapter["files"]]
    return ModelRef(
        name=m["name"],
        version=version,
        kind=m["kind"],
        base=m["base"]["ref"],
        base_path=m["base"]["path"],
        base_digest=m["base"]["digest"],
        digest=manifest_digest(m),
        revision=m["base"]["revision"],
        adapter_path=adapter["path"] if adapter else None,
        adapter_digest=adapter["digest"] if adapter else None,
        params=dict(m.get("params") or {}),
        files=tuple(files),
    )


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
    from tqdm.auto import tqdm

    from ...backends import files as files_mod

    cfg = cfg or settings()
    name = check_name(name, "model name")
    if name in (DEFAULT_CHAT_REF, DEFAULT_EMBEDDING_REF):
        raise BadInput(f"{name!r} is the embedded default model's name: pick another (e.g. chat)")
    if kind not in KINDS:
        raise BadInput(f"unknown kind {kind!r}: choose chat or embedding")
    if alias is not None:
        check_alias_name(alias)
    params = _parse_params(params)
    base_path, revision = _resolve_base(str(base), revision, kind, cfg)
    adapter_path = None
    if adapter:
        adapter_path = Path(adapter).expanduser()
        if not (adapter_path / "adapter_config.json").is_file():
            raise BadInput(f"--adapter {adapter} is not a PEFT adapter folder (no adapter_config.json)")
        adapter_path = adapter_path.resolve()
    before = files_mod.bytes_hashed
    todo = [p for root in (base_path, adapter_path) if root for p in _folder_files(root)]
    try:
        with tqdm(
            total=sum(p.stat().st_size for p in todo), unit="B", unit_scale=True, desc=f"digests of {name}", leave=False
        ) as bar:
            base_files, base_digest = _digest_folder("base", base_path, cfg, bar)
            adapter_files, adapter_digest = ([], None)
            if adapter_path:
                adapter_files, adapter_digest = _digest_folder("adapter", adapter_path, cfg, bar)
    except OSError as e:
        raise BadInput(f"cannot read {e.filename or 'a model file'}: {e.strerror or e}") from None
    hashed = files_mod.bytes_hashed - before
    manifest = _manifest(
        name,
        kind,
        str(base),
        base_path,
        revision,
        base_files,
        base_digest,
        adapter_path,
        adapter_files,
        adapter_digest,
        params,
    )
    digest = manifest_digest(manifest)
    latest = _latest(name, cfg)
    if (
        latest is not None
        and latest.digest == digest
        and latest.base_path == str(base_path)
        and latest.adapter_path == (str(adapter_path) if adapter_path else None)
    ):
        model, created = latest, False
    else:
        model, created = _create_version(name, manifest, digest, message, cfg), True
        events.emit(
            events.ModelRegistered(
                name=name,
                version=model.version,
                model_kind=kind,
                digest=digest,
                base_digest=base_digest,
                adapter_digest=adapter_digest,
            )
        )
    if alias is not None:
        from .aliases import move_alias

        move_alias("model", name, alias, model.version, cfg=cfg)
    return ModelRegistration(model, created, alias, hashed)


def _create_version(name: str, manifest: dict, digest: str, message: str | None, cfg: Settings) -> ModelRef:
    from mlflow.entities import LoggedModelStatus
    from mlflow.models.utils import get_external_mlflow_model_spec

    c = client(cfg)
    exp = experiment_id(cfg=cfg)
    manifest = {**manifest, "registered_by": who(), "registered_at": now_iso()}
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
            c.create_registered_model(name, tags={"llmops.kind": manifest["kind"]}, description=message)
        run = c.create_run(exp, run_name=f"register {name}", tags={"llmops.kind": "model_registration", **tags})
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
        terminate(c, run_id, "FINISHED")
    model = _from_manifest(int(mv.version), manifest)
    with _cache_lock:
        _versions[(cfg.resolved_tracking_uri, name, model.version)] = model
    return model


def _registered(name: str, cfg: Settings):
    c = client(cfg)
    try:
        rm = c.get_registered_model(name)
    except Exception as e:
        if getattr(e, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
            return None
        if "prompt" in str(e).lower():
            raise BadInput(f"{name!r} is a registered prompt, not a model: pick another model name") from None
        raise
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
            if getattr(e, "error_code", "") not in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
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
    model = _from_manifest(int(mv.version), manifest)
    with _cache_lock:
        _versions[key] = model
    return model


def _versions_of(name: str, cfg: Settings) -> str:
    try:
        found = client(cfg).search_model_versions(f"name='{name}'", max_results=1000)
        numbers = sorted(int(v.version) for v in found)
        return ", ".join(map(str, numbers[-10:])) or "none"
    except Exception:
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
        from .aliases import alias_target

        version = alias_target("model", ref.name, ref.alias, cfg)
        if version is None:
            aliases = sorted(client(cfg).get_registered_model(ref.name).aliases or {})
            listed = f"aliases: {', '.join(aliases)}" if aliases else "it has no aliases"
            raise ModelNotFound(
                f"model {ref.name} has no alias {ref.alias!r} ({listed}): "
                f"set it with %llm_alias model {ref.name} {ref.alias} VERSION"
            )
        return _load_version(ref.name, version, cfg)
    latest = _latest(ref.name, cfg)
    if latest is None:
        raise ModelNotFound(f"model {ref.name} has no versions: register one with %llm_model register")
    return latest


@bounded_command
def resolve_registered(ref: str, cfg: Settings) -> ResolvedModel | None:
    """The resolver behind ``resolve_model("chat@champion")``: pins first, then the registry.

    Returns None for what is not a registry ref (a folder, a path), so other resolvers
    and the folder rule get their turn.
    """
    try:
        if Path(ref).expanduser().is_dir():
            return None
    except (OSError, RuntimeError):  # "~nobody" has no home folder: not a folder either
        pass
    try:
        parsed = parse_ref(ref, "model")
    except BadInput:
        return None
    from .pins import pinned

    pin = pinned("model", parsed, cfg)
    if pin is not None and pin.model is not None:
        return pin.model.resolved(ref, via="pin")
    try:
        return find_model(parsed, cfg).resolved(ref)
    except MlflowUnavailable:
        from .pins import locked

        found = locked("model", parsed, cfg)
        if found is None:
            raise
        return found.resolved(ref, via="lockfile")


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


register_resolver(resolve_registered)
