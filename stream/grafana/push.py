"""Upload the boards to a running Grafana through its HTTP API (``grafana-client``).

Idempotent: the folder and every board keep stable uids, and each board is saved with
``overwrite`` set, so pushing again replaces the boards in place (Grafana keeps the
earlier ones as versions) and never duplicates them. What is called, in order:

1. ``GET /api/folders/<uid>``; if there is none, ``POST /api/folders`` to create it,
   and if its title differs, ``PUT /api/folders/<uid>`` to rename it;
2. ``POST /api/dashboards/db`` once per board, with ``folderUid`` and ``overwrite``.

Authentication is a service-account token (``Authorization: Bearer ...``) or a user
and password (HTTP basic).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from grafana_client.api import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException, GrafanaServerError

__all__ = ["FOLDER_TITLE", "FOLDER_UID", "PushError", "Pushed", "connect", "push_boards"]

FOLDER_UID = "urbansense"
"""The uid of the folder the boards go into."""
FOLDER_TITLE = "urbansense"
"""Its title."""


class PushError(RuntimeError):
    """Grafana refused or could not be reached; ``retryable`` says whether trying again can help.

    Attributes:
        status: the HTTP status Grafana answered, 0 when it did not answer.
        retryable: False for a refusal that stays (bad credentials, a forbidden folder,
            an invalid board); True for a server error or a connection that failed.
    """

    def __init__(self, message: str, *, status: int, retryable: bool) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


@dataclass(frozen=True, slots=True)
class Pushed:
    """One board Grafana saved: its uid, where it lives, and the version it is now at."""

    uid: str
    title: str
    url: str
    version: int


def connect(
    url: str,
    *,
    token: str | None = None,
    user: str | None = None,
    password: str | None = None,
    timeout: float = 10.0,
) -> GrafanaApi:
    """A client of the Grafana at ``url`` (no request is made yet).

    Args:
        url: Grafana's base URL, e.g. ``http://grafana:3000``.
        token: a service-account or API token, sent as ``Authorization: Bearer``.
        user: a user for HTTP basic authentication (with ``password``), instead.
        password: that user's password.
        timeout: seconds to wait for each answer.

    Raises:
        ValueError: both a token and a user are given, or a user without a password.
    """
    if token and user:
        msg = "give either a token or a user and password, not both"
        raise ValueError(msg)
    if user and password is None:
        msg = f"user {user!r} needs a password"
        raise ValueError(msg)
    credential: str | tuple[str, str] | None = token or None
    if user is not None and password is not None:
        credential = (user, password)
    api: GrafanaApi = GrafanaApi.from_url(url, credential=credential, timeout=timeout)
    return api


def _error(exc: GrafanaException, what: str) -> PushError:
    status = int(getattr(exc, "status_code", 0) or 0)
    retryable = isinstance(exc, GrafanaServerError) or status in (0, 408, 429)
    detail = getattr(exc, "message", None) or str(exc)
    return PushError(f"{what}: {detail} (HTTP {status})", status=status, retryable=retryable)


def _ensure_folder(api: GrafanaApi, uid: str, title: str) -> None:
    folders: Any = api.folder  # grafana-client's element APIs are not annotated
    try:
        folder: dict[str, Any] = folders.get_folder(uid)
    except GrafanaClientError as exc:
        if getattr(exc, "status_code", None) != 404:
            raise _error(exc, f"reading folder {uid!r}") from exc
        try:
            folders.create_folder(title, uid=uid)
        except GrafanaException as create_exc:
            raise _error(create_exc, f"creating folder {uid!r}") from create_exc
        return
    except GrafanaException as exc:
        raise _error(exc, f"reading folder {uid!r}") from exc
    if folder.get("title") != title:
        try:
            folders.update_folder(uid, title=title, overwrite=True)
        except GrafanaException as exc:
            raise _error(exc, f"renaming folder {uid!r}") from exc


def push_boards(
    api: GrafanaApi,
    boards: Mapping[str, Mapping[str, Any]],
    *,
    folder_uid: str = FOLDER_UID,
    folder_title: str = FOLDER_TITLE,
    message: str = "urbansense grafana push",
) -> list[Pushed]:
    """Save every board into the folder, replacing the boards of the same uids.

    Args:
        api: the client (:func:`connect`).
        boards: the boards' JSON (:func:`stream.grafana.build_boards`), by file name.
        folder_uid: the folder's uid; created when missing.
        folder_title: the folder's title.
        message: the version message Grafana records.

    Returns:
        What Grafana saved, board by board.

    Raises:
        PushError: Grafana refused a request or did not answer; the boards pushed before
            it stay pushed (pushing again is safe).
    """
    _ensure_folder(api, folder_uid, folder_title)
    dashboards: Any = api.dashboard  # not annotated either
    pushed: list[Pushed] = []
    for board in boards.values():
        dashboard = {**board, "id": None}
        dashboard.pop("version", None)
        payload = {
            "dashboard": dashboard,
            "folderUid": folder_uid,
            "overwrite": True,
            "message": message,
        }
        try:
            answer: dict[str, Any] = dashboards.update_dashboard(payload)
        except GrafanaException as exc:
            raise _error(exc, f"saving board {board.get('uid')!r}") from exc
        pushed.append(
            Pushed(
                uid=str(answer.get("uid", board.get("uid"))),
                title=str(board.get("title")),
                url=str(answer.get("url", "")),
                version=int(answer.get("version", 0)),
            )
        )
    return pushed
