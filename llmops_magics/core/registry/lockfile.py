"""The lockfile: ``llmops.lock.json`` beside the notebook, and the versions it holds.

It keeps every pin with its digest and the whole version, so :func:`.pins.load_lock` can
verify a notebook's pins against the registry and the disk, and :func:`locked` can resolve
a ref while MLflow does not answer. This module reads and writes the file; what goes in it
is :meth:`.pinset.PinSet.lock`.
"""

from __future__ import annotations

import json
from pathlib import Path

from ...config import Settings, settings
from ...errors import BadInput, DigestMismatch
from ..tracking import public_uri
from .base import RegistryKind
from .kinds import kind_of
from .refs import Ref

LOCKFILE = "llmops.lock.json"
LOCK_FORMAT = 1

# The lockfile in force: the one last saved or loaded here, else llmops.lock.json in the cwd.
_in_force: Path | None = None


def use_lockfile(path: Path) -> None:
    """Make ``path`` the lockfile :func:`locked` reads."""
    global _in_force
    _in_force = path


def write_lock(content: dict, path: str | Path | None = None) -> Path:
    """Write lockfile ``content`` to ``path`` (``llmops.lock.json`` in the cwd) and put it in force."""
    path = Path(path or LOCKFILE)
    try:
        path.write_text(json.dumps(content, indent=2, default=str) + "\n")
    except OSError as e:
        raise BadInput(f"cannot write {path}: {e.strerror or e}: pick a writable path") from None
    use_lockfile(path)
    return path


def read_lock(path: Path) -> list:
    """The pin entries of the lockfile at ``path``.

    Raises
    ------
    BadInput
        When there is no such file or it is not an llmops lockfile.
    """
    try:
        data = json.loads(path.read_text())
        entries = data["pins"]
        if data.get("llmops_lock") != LOCK_FORMAT or not isinstance(entries, list):
            raise ValueError("unknown format")
    except FileNotFoundError:
        raise BadInput(f"no lockfile at {path}: write one with %llm_pin --save") from None
    except OSError as e:
        raise BadInput(f"cannot read {path}: {e.strerror or e}") from None
    except (ValueError, KeyError, TypeError) as e:
        raise BadInput(f"{path} is not an llmops lockfile ({e}): write one with %llm_pin --save") from None
    return entries


def locked(kind: str | RegistryKind, ref: Ref, cfg: Settings | None = None):
    """The version the lockfile in force holds for ``ref``, or None.

    Same store, and the ref names its version, its alias or just its name. Files on disk
    are checked against the digests the lockfile recorded.

    Raises
    ------
    DigestMismatch
        When the locked version's files changed on disk.
    """
    cfg = cfg or settings()
    kind = kind_of(kind)
    path = _in_force or Path(LOCKFILE)
    try:
        data = json.loads(path.read_text())
        entries = data["pins"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    store = public_uri(cfg.resolved_tracking_uri)
    for e in entries:
        if not isinstance(e, dict) or (e.get("kind"), e.get("name")) != (kind.name, ref.name) or not e.get("ref"):
            continue
        if e.get("store", data.get("tracking_uri")) != store:
            continue  # a version of another registry
        if ref.is_latest or (ref.alias is not None and ref.alias == e.get("alias")) or ref.version == e.get("version"):
            try:
                found = kind.from_data(e["ref"])
            except TypeError:  # a lockfile from another version of this package
                return None
            if kind.changed_files(found, cfg):
                raise DigestMismatch(
                    f"{path} pins {found.label}, but its files changed on disk: restore them "
                    "or resolve it in the registry once MLflow answers"
                )
            return found
    return None
