"""What a registered model version is made of: its files, their digests, its manifest.

The manifest (``manifest.json``) names the base folder or hub id + revision, the sha256 of
every file, the adapter and its digest, the serving params and the kind. The weights stay
where they are; their digests say whether they are still the same bytes. File digests are
streamed and cached by (path, size, mtime) in the model cache, so describing unchanged
files again reads no weight bytes. Plain Python: no registry call here.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ...backends import files as files_mod
from ...backends.default_models import chat_model_dir, embedding_model_dir
from ...backends.files import sha256_file
from ...backends.progress import progress_bar
from ...config import DEFAULT_CHAT_REF, DEFAULT_EMBEDDING_REF, Settings, settings
from ...errors import BadInput

KINDS = ("chat", "embedding")
MANIFEST = "manifest.json"


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
    # Where this version came from when not the registry: "pin" or "lockfile".
    via: str = field(default="", compare=False)

    def __hash__(self):
        return hash((self.name, self.version, self.digest))

    @property
    def label(self) -> str:
        return f"{self.name}/{self.version}"

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


def folder_files(root: Path) -> list[Path]:
    # Every file counts (config and tokenizer change behaviour as much as weights do);
    # hidden files and folders (.cache, .git) are bookkeeping, not the model.
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files.extend(Path(dirpath) / n for n in sorted(filenames) if not n.startswith("."))
    return files


def _digest_folder(part: str, root: Path, cfg: Settings, bar) -> tuple[list[FileDigest], str]:
    out = []
    for p in folder_files(root):
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
            from huggingface_hub import snapshot_download  # deferred: heavy, and only hub ids need it

            local = Path(snapshot_download(base, revision=revision, local_files_only=True))
            return local, revision or local.name
        except Exception:
            pass
    raise BadInput(
        f"base {base!r} is not a local folder nor in the local Hugging Face cache "
        "(nothing is downloaded here): give 'default' or a model folder"
    )


def parse_params(params) -> dict:
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


def from_manifest(version: int, m: dict) -> ModelRef:
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


def describe_files(
    name: str, base: str, *, revision: str | None, adapter: str | None, params, kind: str, cfg: Settings
) -> tuple[dict, int]:
    """The manifest of model ``name`` built from the files on disk, and how many bytes were hashed.

    Raises
    ------
    BadInput
        When the base, the adapter or a param is not what a registration needs.
    """
    if kind not in KINDS:
        raise BadInput(f"unknown kind {kind!r}: choose chat or embedding")
    params = parse_params(params)
    base_path, revision = _resolve_base(str(base), revision, kind, cfg)
    adapter_path = _adapter_folder(adapter) if adapter else None
    before = files_mod.bytes_hashed
    todo = [p for root in (base_path, adapter_path) if root for p in folder_files(root)]
    try:
        with progress_bar(
            total=sum(p.stat().st_size for p in todo), unit="B", unit_scale=True, desc=f"digests of {name}", leave=False
        ) as bar:
            base_files, base_digest = _digest_folder("base", base_path, cfg, bar)
            adapter_files, adapter_digest = ([], None)
            if adapter_path:
                adapter_files, adapter_digest = _digest_folder("adapter", adapter_path, cfg, bar)
    except OSError as e:
        raise BadInput(f"cannot read {e.filename or 'a model file'}: {e.strerror or e}") from None
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
    return manifest, files_mod.bytes_hashed - before


def _adapter_folder(adapter: str) -> Path:
    path = Path(adapter).expanduser()
    if not (path / "adapter_config.json").is_file():
        raise BadInput(f"--adapter {adapter} is not a PEFT adapter folder (no adapter_config.json)")
    return path.resolve()


def same_version(model: ModelRef, manifest: dict) -> bool:
    """Whether ``manifest`` describes ``model``: the same contents at the same places."""
    adapter = manifest["adapter"]
    return (
        model.digest == manifest_digest(manifest)
        and model.base_path == manifest["base"]["path"]
        and model.adapter_path == (adapter["path"] if adapter else None)
    )
