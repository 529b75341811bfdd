"""Who is doing this, as MLflow knows them: the name alias moves, pins and registrations record.

MLflow's own rule for a run's ``mlflow.user`` is "the tracking username, else the login
name". The same order here, with one step between: a server that authenticates by token
(no username on this side) is asked who the token belongs to, once per tracking URI.
The OS login comes last: in a container it is often ``root``, which says nothing.
"""

from __future__ import annotations

import getpass
import os
import threading

from ...config import Settings, settings
from .budget import call

# MLflow's basic-auth app answers this with {"user": {"username": ...}}.
CURRENT_USER_ENDPOINT = "/api/2.0/mlflow/users/current"
# One answer per tracking URI for the process: who a token belongs to does not change.
_asked: dict[str, str | None] = {}
_lock = threading.Lock()


def current_user(cfg: Settings | None = None) -> str:
    """The name to record as the author of registry work.

    In order: ``MLFLOW_TRACKING_USERNAME`` (or the username of MLflow's credentials file),
    the user a tracking server says a token belongs to (asked once per URI, only when a
    token or an auth plugin is set and no username is), then the OS login name.

    Parameters
    ----------
    cfg : Settings, optional
        Whose tracking URI to ask; the current settings when not given.

    Returns
    -------
    str
        Never empty: ``uid<N>`` when even the OS has no name for the process.
    """
    # deferred: mlflow.utils.credentials imports mlflow's environment variables (heavy on first use)
    from mlflow.utils.credentials import read_mlflow_creds

    username = read_mlflow_creds().username
    if username:
        return username
    return _server_user(cfg or settings()) or _os_user()


def _server_user(cfg: Settings) -> str | None:
    uri = cfg.resolved_tracking_uri
    if not uri.startswith(("http://", "https://")) or not _has_token():
        return None
    with _lock:
        if uri in _asked:
            return _asked[uri]
    try:
        found = call("read the current user", lambda: _ask(uri), cfg)
    except Exception:  # no auth app, a refused token, a server down: the OS name will do
        return None  # not cached: the next command may reach a server that answers
    with _lock:
        _asked[uri] = found
    return found


def _has_token() -> bool:
    return bool(os.environ.get("MLFLOW_TRACKING_TOKEN") or os.environ.get("MLFLOW_TRACKING_AUTH"))


def _ask(uri: str) -> str | None:
    # deferred: only a token-authenticated server is asked; mlflow's REST helpers are heavy
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    # One try: a missing endpoint (404, no auth app) is an answer, not a reason to retry.
    response = http_request(
        get_default_host_creds(uri), CURRENT_USER_ENDPOINT, "GET", max_retries=0, timeout=3, raise_on_status=False
    )
    if response.status_code != 200:
        return None
    return ((response.json() or {}).get("user") or {}).get("username") or None


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return f"uid{os.getuid()}" if hasattr(os, "getuid") else "unknown"
