"""What a run used, linked the way MLflow's own UI shows it.

* Prompt versions: the run tag ``mlflow.linkedPrompts`` (a JSON list), the tag MLflow's
  ``link_prompt_version_to_run`` writes; the run page's "Registered prompts" reads it.
* Model versions: our registered versions point at MLflow 3 (external) ``LoggedModel``s
  (the version's ``model_id``). A run lists them as model inputs (``log_inputs(models=)``):
  the run page shows them under "Logged models", and each one's registered versions
  (the logged model's ``mlflow.modelVersions`` tag, which MLflow's own ``register_model``
  writes) under "Registered models".
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable

from .errors import is_not_found

LINKED_PROMPTS_TAG = "mlflow.linkedPrompts"
MODEL_VERSIONS_TAG = "mlflow.modelVersions"
MODEL_ID_TAG = "llmops.model_id"  # also on our versions, for stores that predate model_id

_lock = threading.Lock()
# (tracking URI, name, version) -> model_id or None: a version's model never changes.
_model_ids: dict[tuple[str, str, str], str | None] = {}


def linked_prompts_tag(prompts: Iterable, existing: str | None = None) -> dict:
    """``{"mlflow.linkedPrompts": ...}`` for ``prompts`` (``(name, version)`` pairs) added to
    the ``existing`` tag value, each version once, in order; ``{}`` when there is none."""
    seen: list[dict] = []
    if existing:
        try:
            seen = [{"name": str(p["name"]), "version": str(p["version"])} for p in json.loads(existing)]
        except (ValueError, TypeError, KeyError):
            seen = []
    for name, version in prompts:
        entry = {"name": str(name), "version": str(version)}
        if entry not in seen:
            seen.append(entry)
    return {LINKED_PROMPTS_TAG: json.dumps(seen)} if seen else {}


def model_pairs(models: Iterable) -> list:
    """``models`` as a JSON-ready list: ``[name, version]`` pairs for registered versions,
    model ids (``m-...``) as they are; each once, in order."""
    out: list = []
    for m in models or ():
        item = m if isinstance(m, str) else [str(m[0]), str(m[1])]
        if item not in out:
            out.append(item)
    return out


def model_ids(c, models: Iterable, uri: str) -> list[str]:
    """The ``LoggedModel`` id of each registered version in ``models`` (a name/version pair
    or a model id), making sure each logged model names its version (MLflow's own
    ``mlflow.modelVersions`` tag) so the run page lists the version too.

    A version that no longer exists, or has no logged model (registered before MLflow 3),
    has nothing to link and is left out. Other failures are raised: the caller keeps the
    run for later. ``c`` is the bounded client; results are cached for the process.
    """
    ids: list[str] = []
    for m in models:
        if isinstance(m, str):
            found = m
        else:
            found = _model_id(c, str(m[0]), str(m[1]), uri)
        if found and found not in ids:
            ids.append(found)
    return ids


def _model_id(c, name: str, version: str, uri: str) -> str | None:
    key = (uri, name, version)
    with _lock:
        if key in _model_ids:
            return _model_ids[key]
    try:
        mv = c.get_model_version(name, version)
    except Exception as e:
        if not is_not_found(e):
            raise
        found = None
    else:
        found = getattr(mv, "model_id", None) or (mv.tags or {}).get(MODEL_ID_TAG)
        if found and not _names_version(c, found, name, version):
            found = None
    with _lock:
        _model_ids[key] = found
    return found


def _names_version(c, model_id: str, name: str, version: str) -> bool:
    """Add ``name``/``version`` to the logged model's ``mlflow.modelVersions`` when missing;
    False when the logged model is gone."""
    try:
        lm = c.get_logged_model(model_id)
    except Exception as e:
        if is_not_found(e):
            return False
        raise
    try:
        listed = json.loads((lm.tags or {}).get(MODEL_VERSIONS_TAG) or "[]")
    except ValueError:
        listed = []
    entry = {"name": name, "version": version}
    if not isinstance(listed, list):
        listed = []
    if not any(isinstance(v, dict) and str(v.get("name")) == name and str(v.get("version")) == version for v in listed):
        c.set_logged_model_tags(model_id, {MODEL_VERSIONS_TAG: json.dumps([*listed, entry])})
    return True
