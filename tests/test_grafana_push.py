"""``urbansense grafana push`` against an HTTP server speaking Grafana's API.

No Grafana binary runs on the test machine (no package installs one), so a small
aiohttp server stands in for it: it implements, over a real socket, the endpoints the
push uses -- ``GET``/``POST``/``PUT`` ``/api/folders`` and ``POST /api/dashboards/db``
-- with Grafana's semantics that matter here (a board is found by uid; without
``overwrite`` a board of the same uid is refused with 412; with it, the board is
replaced and its version goes up; a folder uid is unique; 401 without valid
credentials). It records every request, so the tests see what grafana-client sent.

Checked: pushing twice leaves the same boards in the same folder (only the versions
move on), the token goes as ``Authorization: Bearer`` and a user as HTTP basic on every
request, a wrong token is refused with exit status 1 and nothing stored, a folder of
another title is renamed, and a server error is reported as one that may pass.
"""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from stream.cli import main
from stream.grafana import BoardSettings, PushError, build_boards, connect, push_boards
from telemetry.registry import load_example_registry
from tests.servers._procs import LOOPBACK, free_ports

TOKEN = "glsa_stand-in-token"  # noqa: S105 -- the stand-in's own, not a secret
USER, PASSWORD = "admin", "s3cret"


@dataclass
class Request:
    """One request the stand-in received."""

    method: str
    path: str
    authorization: str | None
    body: Any


@dataclass
class StandInGrafana:
    """A stand-in for Grafana's HTTP API: folders and dashboards, in memory."""

    port: int = 0
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    fail_dashboards: int = 0  # answer this many dashboard saves with 500

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def _authorised(self, header: str | None) -> bool:
        basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        return header in (f"Bearer {TOKEN}", f"Basic {basic}")

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body = await request.json() if request.can_read_body else None
        header = request.headers.get("Authorization")
        self.requests.append(Request(request.method, request.path, header, body))
        if not self._authorised(header):
            return web.json_response({"message": "Unauthorized"}, status=401)
        response: web.StreamResponse = await handler(request)
        return response

    async def get_folder(self, request: web.Request) -> web.Response:
        folder = self.folders.get(request.match_info["uid"])
        if folder is None:
            return web.json_response({"message": "folder not found"}, status=404)
        return web.json_response(folder)

    async def create_folder(self, request: web.Request) -> web.Response:
        body = await request.json()
        uid = body.get("uid") or f"f{len(self.folders)}"
        if uid in self.folders:
            return web.json_response({"message": "a folder with that uid exists"}, status=409)
        self.folders[uid] = {
            "id": len(self.folders) + 1,
            "uid": uid,
            "title": body["title"],
            "version": 1,
        }
        return web.json_response(self.folders[uid])

    async def update_folder(self, request: web.Request) -> web.Response:
        uid = request.match_info["uid"]
        body = await request.json()
        folder = self.folders.get(uid)
        if folder is None:
            return web.json_response({"message": "folder not found"}, status=404)
        folder.update(title=body["title"], version=folder["version"] + 1)
        return web.json_response(folder)

    async def save_dashboard(self, request: web.Request) -> web.Response:
        if self.fail_dashboards:
            self.fail_dashboards -= 1
            return web.json_response({"message": "database is locked"}, status=500)
        body = await request.json()
        board = body["dashboard"]
        uid = board["uid"]
        if body.get("folderUid") not in self.folders:
            return web.json_response({"message": "folder not found"}, status=400)
        if board.get("id") is not None:
            return web.json_response({"message": "dashboard not found"}, status=404)
        stored = self.dashboards.get(uid)
        if stored is not None and not body.get("overwrite"):
            return web.json_response(
                {
                    "message": "A dashboard with the same uid already exists",
                    "status": "name-exists",
                },
                status=412,
            )
        version = 1 if stored is None else stored["version"] + 1
        self.dashboards[uid] = {
            "dashboard": board,
            "folderUid": body["folderUid"],
            "version": version,
        }
        return web.json_response(
            {
                "id": list(self.dashboards).index(uid) + 1,
                "uid": uid,
                "url": f"/d/{uid}/board",
                "status": "success",
                "version": version,
                "slug": "board",
            }
        )

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        app.router.add_get("/api/folders/{uid}", self.get_folder)
        app.router.add_post("/api/folders", self.create_folder)
        app.router.add_put("/api/folders/{uid}", self.update_folder)
        app.router.add_post("/api/dashboards/db", self.save_dashboard)
        return app

    def state(self) -> dict[str, Any]:
        """What a user of Grafana would see: folders and boards, without versions."""
        return {
            "folders": {uid: f["title"] for uid, f in self.folders.items()},
            "dashboards": {
                uid: (d["folderUid"], d["dashboard"]) for uid, d in self.dashboards.items()
            },
        }


@pytest.fixture
def grafana() -> Iterator[StandInGrafana]:
    """The stand-in, serving on a loopback port from its own thread."""
    server = StandInGrafana(port=free_ports(1)[0])
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(server.app())
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, LOOPBACK, server.port).start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, name="stand-in-grafana", daemon=True)
    thread.start()
    assert ready.wait(10), "the stand-in Grafana did not start"
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


BOARDS = build_boards(BoardSettings(load_example_registry()))


def test_pushing_twice_leaves_the_same_boards_in_the_folder(
    grafana: StandInGrafana, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["grafana", "push", "--url", grafana.url, "--token", TOKEN]) == 0
    first = grafana.state()
    assert first["folders"] == {"urbansense": "urbansense"}
    assert set(first["dashboards"]) == {b["uid"] for b in BOARDS.values()}
    for board in BOARDS.values():
        folder, stored = first["dashboards"][board["uid"]]
        assert folder == "urbansense"
        assert stored == {**board, "id": None}
    assert main(["grafana", "push", "--url", grafana.url, "--token", TOKEN]) == 0
    assert grafana.state() == first
    assert {d["version"] for d in grafana.dashboards.values()} == {2}
    assert len(grafana.folders) == 1
    saves = [r for r in grafana.requests if r.path == "/api/dashboards/db"]
    assert len(saves) == 2 * len(BOARDS)
    assert all(r.body["overwrite"] is True for r in saves)
    assert all(r.authorization == f"Bearer {TOKEN}" for r in grafana.requests)
    # The folder is created once; the second push finds it.
    assert [r.method for r in grafana.requests if r.path.startswith("/api/folders")] == [
        "GET",
        "POST",
        "GET",
    ]
    out = capsys.readouterr().out
    assert "urbansense-overview version 2 /d/urbansense-overview/board" in out


def test_a_user_and_password_go_as_basic_authentication(
    grafana: StandInGrafana, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRAFANA_PASSWORD", PASSWORD)
    monkeypatch.delenv("GRAFANA_TOKEN", raising=False)
    assert main(["grafana", "push", "--url", grafana.url, "--user", USER]) == 0
    basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert grafana.requests
    assert {r.authorization for r in grafana.requests} == {basic}
    assert len(grafana.dashboards) == len(BOARDS)


def test_the_token_may_come_from_the_environment(
    grafana: StandInGrafana, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRAFANA_TOKEN", TOKEN)
    assert main(["grafana", "push", "--url", grafana.url]) == 0
    assert {r.authorization for r in grafana.requests} == {f"Bearer {TOKEN}"}


def test_a_wrong_token_is_refused_and_nothing_is_stored(
    grafana: StandInGrafana, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["grafana", "push", "--url", grafana.url, "--token", "wrong"]) == 1
    err = capsys.readouterr().err
    assert "401" in err
    assert "retrying may help" not in err
    assert grafana.state() == {"folders": {}, "dashboards": {}}


def test_a_folder_of_another_title_is_renamed(grafana: StandInGrafana) -> None:
    grafana.folders["urbansense"] = {"id": 1, "uid": "urbansense", "title": "old", "version": 1}
    pushed = push_boards(connect(grafana.url, token=TOKEN), BOARDS)
    assert grafana.folders["urbansense"]["title"] == "urbansense"
    assert [p.uid for p in pushed] == [b["uid"] for b in BOARDS.values()]
    assert all(p.version == 1 for p in pushed)


def test_a_server_error_is_reported_as_retryable_and_a_retry_completes(
    grafana: StandInGrafana,
) -> None:
    grafana.fail_dashboards = 1
    api = connect(grafana.url, token=TOKEN)
    with pytest.raises(PushError) as caught:
        push_boards(api, BOARDS)
    assert caught.value.retryable
    assert caught.value.status == 500
    push_boards(api, BOARDS)
    assert len(grafana.dashboards) == len(BOARDS)


def test_a_token_and_a_user_together_are_refused() -> None:
    with pytest.raises(ValueError, match="either a token or a user"):
        connect("http://127.0.0.1:9", token=TOKEN, user=USER, password=PASSWORD)
