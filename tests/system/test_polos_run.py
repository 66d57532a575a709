"""``manage.py polos_run`` as users run it, in this run's mode: HTTP, WebSockets, the worker
and beat all answer, and it stops cleanly."""

from __future__ import annotations

import json
import os
import re
import stat
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
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


@dataclass
class Running:
    server: PolosServer
    beat_marker: Path


def marker_lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture(scope="module")
def running(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[Running]:
    """One polos_run for the module, with a user and a beat entry committed beforehand."""
    beat_marker = tmp_path_factory.mktemp("beat") / "beat.log"
    with django_db_blocker.unblock():
        get_user_model().objects.create_user(USERNAME, password=PASSWORD)
        every_second = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.SECONDS)
        PeriodicTask.objects.create(
            name="test marker",
            task="tests.marker",
            interval=every_second,
            args=json.dumps([str(beat_marker), "beat", True]),
        )
    try:
        with polos_run() as server:
            yield Running(server=server, beat_marker=beat_marker)
    finally:
        with django_db_blocker.unblock():
            call_command("flush", interactive=False, verbosity=0)


def test_it_announces_its_address_and_mode(running: Running) -> None:
    assert f"Polos is running at {running.server.base_url}/ ({MODE})" in running.server.output()


def test_healthz_reports_database_broker_and_channel_layer_ok(running: Running) -> None:
    response = httpx.get(f"{running.server.base_url}/healthz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    for part in ("database", "broker", "channel_layer"):
        assert body[part]["ok"] is True, body


def test_pages_and_static_files_are_served(running: Running) -> None:
    base = running.server.base_url

    css = httpx.get(f"{base}/static/css/polos.css")
    admin_css = httpx.get(f"{base}/static/admin/css/base.css")
    root = httpx.get(f"{base}/")
    inbox = httpx.get(f"{base}/approvals/")

    assert css.status_code == 200 and "text/css" in css.headers["content-type"]
    assert admin_css.status_code == 200
    assert (root.status_code, root.headers["location"]) == (302, "/approvals/")
    assert inbox.status_code == 302 and inbox.headers["location"].startswith("/accounts/login/")


def test_anonymous_websocket_is_closed_with_4401(running: Running) -> None:
    with (
        websocket_connect(running.server.ws_url, "/ws/approvals/") as ws,
        pytest.raises(ConnectionClosed) as closed,
    ):
        ws.recv(timeout=10)

    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == CLOSE_UNAUTHORIZED


def test_websocket_from_another_origin_is_refused(running: Running) -> None:
    session = login_session(running.server.base_url, USERNAME, PASSWORD)

    with pytest.raises(Exception, match="403"):
        websocket_connect(
            running.server.ws_url, "/ws/approvals/", session=session, origin="http://evil.example"
        )


def test_logged_in_websocket_receives_what_the_worker_pushes(running: Running) -> None:
    session = login_session(running.server.base_url, USERNAME, PASSWORD)

    with websocket_connect(running.server.ws_url, "/ws/approvals/", session=session) as ws:
        # The beat entry runs the marker task every second; the task pushes to "approvals".
        event = json.loads(ws.recv(timeout=15))

    assert event == {"event_type": MARKER_EVENT_TYPE, "token": "beat"}


def test_beat_entry_runs_on_the_worker(running: Running) -> None:
    wait_until(lambda: marker_lines(running.beat_marker), timeout=15, what="the beat entry")

    pids = {int(pid) for _token, pid in marker_lines(running.beat_marker)}
    if settings.EMBEDDED:
        # One process: the worker is a thread of polos_run.
        assert pids == {running.server.child.pid}
    else:
        assert running.server.child.pid not in pids


def test_task_sent_through_the_broker_runs_on_its_worker(running: Running, tmp_path: Path) -> None:
    if settings.EMBEDDED:
        # The broker is in polos_run's memory: only polos_run itself (its beat, here) can
        # send to that worker. The beat test covers it; check the broker is the in-process one.
        body = httpx.get(f"{running.server.base_url}/healthz").json()
        assert body["broker"]["detail"].startswith("in-process")
        wait_until(lambda: marker_lines(running.beat_marker), timeout=15, what="the beat entry")
        return
    marker = tmp_path / "sent.log"
    token = uuid.uuid4().hex

    celery_app.send_task("tests.marker", args=[str(marker), token])

    wait_until(lambda: marker_lines(marker), timeout=15, what="the task to run")
    [[seen_token, pid]] = marker_lines(marker)
    assert seen_token == token
    assert int(pid) != os.getpid()


def test_demo_admin_is_created_in_embedded_mode_only(running: Running, django_db_blocker) -> None:
    output = running.server.output()
    found = re.search(
        rf"Log in at {re.escape(running.server.base_url)}/admin/ as admin / (\S+)", output
    )
    with django_db_blocker.unblock():
        admin_exists = get_user_model().objects.filter(username="admin").exists()

    if not settings.EMBEDDED:
        assert found is None
        assert not admin_exists
        return
    assert found, output
    assert admin_exists
    password = found[1]
    assert demo_password_file().read_text().strip() == password
    assert stat.S_IMODE(demo_password_file().stat().st_mode) == 0o600
    session = login_session(running.server.base_url, "admin", password, path="/admin/login/")
    index = httpx.get(f"{running.server.base_url}/admin/", cookies={"sessionid": session})
    assert index.status_code == 200 and "Site administration" in index.text
