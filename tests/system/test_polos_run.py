"""``manage.py polos_run`` as users run it, in this run's mode: HTTP, WebSockets, the worker
and beat all answer in one start.

One test per server start: the test database must be set up and flushed around each test
(``transactional_db``), and the server must not outlive the data it was started on.
"""

from __future__ import annotations

import json
import os
import re
import stat
import uuid
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from websockets.exceptions import ConnectionClosed

from approvals.consumers import CLOSE_UNAUTHORIZED
from polos_site.celery import app as celery_app
from tests.support.processes import PolosServer, polos_run, wait_until
from tests.support.tasks import MARKER_EVENT_TYPE
from tests.support.web import login_session, websocket_connect
from workflows.management.commands.polos_run import demo_password_file

MODE = "embedded mode" if settings.EMBEDDED else "services mode"
USERNAME = "alice"
PASSWORD = "correct horse battery staple"


def marker_lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def beat_entry_every_second(marker: Path) -> None:
    """Beat runs the marker task every second; the task also pushes to the inbox group."""
    every_second = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(
        name="test marker",
        task="tests.marker",
        interval=every_second,
        args=json.dumps([str(marker), "beat", True]),
    )


def test_polos_run_serves_http_websockets_worker_and_beat(
    transactional_db: None, tmp_path: Path
) -> None:
    # given a user and a beat entry, committed before the start
    get_user_model().objects.create_user(USERNAME, password=PASSWORD)
    beat_marker = tmp_path / "beat.log"
    beat_entry_every_second(beat_marker)

    # when polos_run starts (the helper waits for /healthz to answer 200)
    with polos_run() as server:
        # then it says where and how it runs
        assert f"Polos is running at {server.base_url}/ ({MODE})" in server.output()
        check_healthz(server)
        check_pages_and_static_files(server)
        check_websockets(server)
        check_beat_and_worker(server, beat_marker)
        check_broker(server, tmp_path / "sent.log")
        check_demo_admin(server)
    # and on leaving, the helper stopped it with SIGINT and saw exit code 0


def check_healthz(server: PolosServer) -> None:
    response = httpx.get(f"{server.base_url}/healthz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    for part in ("database", "broker", "channel_layer"):
        assert body[part]["ok"] is True, body
    expected_broker = "in-process" if settings.EMBEDDED else "redis"
    assert body["broker"]["detail"].startswith(expected_broker)


def check_pages_and_static_files(server: PolosServer) -> None:
    css = httpx.get(f"{server.base_url}/static/css/polos.css")
    admin_css = httpx.get(f"{server.base_url}/static/admin/css/base.css")
    root = httpx.get(f"{server.base_url}/")
    inbox = httpx.get(f"{server.base_url}/approvals/")

    assert css.status_code == 200 and "text/css" in css.headers["content-type"]
    assert admin_css.status_code == 200
    assert (root.status_code, root.headers["location"]) == (302, "/approvals/")
    assert inbox.status_code == 302 and inbox.headers["location"].startswith("/accounts/login/")


def check_websockets(server: PolosServer) -> None:
    # Anonymous: accepted, then closed with 4401.
    with (
        websocket_connect(server.ws_url, "/ws/approvals/") as ws,
        pytest.raises(ConnectionClosed) as closed,
    ):
        ws.recv(timeout=10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == CLOSE_UNAUTHORIZED

    session = login_session(server.base_url, USERNAME, PASSWORD)

    # Another site's page: refused at the handshake, even with the user's cookie.
    with pytest.raises(Exception, match="403"):
        websocket_connect(
            server.ws_url, "/ws/approvals/", session=session, origin="http://evil.example"
        )

    # Logged in: what the worker pushes (the beat's marker task) arrives.
    with websocket_connect(server.ws_url, "/ws/approvals/", session=session) as ws:
        event = json.loads(ws.recv(timeout=20))
    assert event == {"event_type": MARKER_EVENT_TYPE, "token": "beat"}


def check_beat_and_worker(server: PolosServer, beat_marker: Path) -> None:
    wait_until(lambda: marker_lines(beat_marker), timeout=20, what="the beat entry to run")

    pids = {int(pid) for _token, pid in marker_lines(beat_marker)}
    if settings.EMBEDDED:
        # One process: the worker is a thread of polos_run.
        assert pids == {server.child.pid}
    else:
        assert server.child.pid not in pids


def check_broker(server: PolosServer, marker: Path) -> None:
    if settings.EMBEDDED:
        # The broker lives in polos_run's memory: only polos_run itself (its beat, above)
        # sends to that worker; tests/system/test_embedded_worker.py covers this process's.
        return
    token = uuid.uuid4().hex

    celery_app.send_task("tests.marker", args=[str(marker), token])

    wait_until(lambda: marker_lines(marker), timeout=15, what="the sent task to run")
    [[seen_token, pid]] = marker_lines(marker)
    assert seen_token == token
    assert int(pid) not in (os.getpid(), server.child.pid)


def check_demo_admin(server: PolosServer) -> None:
    found = re.search(
        rf"Log in at {re.escape(server.base_url)}/admin/ as admin / (\S+)", server.output()
    )
    admin_exists = get_user_model().objects.filter(username="admin").exists()
    if not settings.EMBEDDED:
        assert found is None and not admin_exists
        return
    assert found, server.output()
    assert admin_exists
    password = found[1]
    assert demo_password_file().read_text().strip() == password
    assert stat.S_IMODE(demo_password_file().stat().st_mode) == 0o600
    session = login_session(server.base_url, "admin", password, path="/admin/login/")
    index = httpx.get(f"{server.base_url}/admin/", cookies={"sessionid": session})
    assert index.status_code == 200 and "Site administration" in index.text
