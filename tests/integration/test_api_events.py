"""The event log over HTTP: listing, publishing, and the SSE streams."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.utils import timezone

import tests.support.flows  # noqa: F401 - registers the test workflows
from tests.support.api import Api, advance, parse_sse, sse_open, sse_read
from workflows import services, sse
from workflows.models import Event, Execution

pytestmark = pytest.mark.django_db


@pytest.fixture
def api() -> Api:
    return Api.create()


def start(api: Api, workflow_id: str = "test-approval", payload: dict | None = None) -> str:
    response = api.post(f"/workflows/{workflow_id}/run", {"payload": payload or {"amount": 7}})
    assert response.status_code == 201, response.json()
    return response.json()["execution_id"]


def run_to_the_end(api: Api, execution_id: str) -> None:
    advance(execution_id)
    response = api.post(
        f"/executions/{execution_id}/resume", {"step_key": "approval", "data": {"approved": True}}
    )
    assert response.status_code == 202
    assert advance(execution_id).status == Execution.Status.COMPLETED


# -- GET /events ------------------------------------------------------------------------------


def test_events_of_an_execution_are_listed_in_sequence_order(api):
    execution_id = start(api)
    run_to_the_end(api, execution_id)

    response = api.get(f"/events?execution_id={execution_id}")

    assert response.status_code == 200
    body = response.json()
    assert body["has_more"] is False
    types = [event["event_type"] for event in body["events"]]
    assert types[0] == "execution_start" and types[-1] == "execution_finish"
    assert "suspend" in types and "resume" in types
    ids = [event["sequence_id"] for event in body["events"]]
    assert ids == sorted(ids)
    first = body["events"][0]
    assert set(first) == {
        "sequence_id",
        "topic",
        "event_type",
        "execution_id",
        "workflow_id",
        "step_key",
        "data",
        "created_at",
    }
    assert first["topic"] == f"workflow/test-approval/{execution_id}"
    assert first["execution_id"] == execution_id


def test_events_filter_by_topic_and_page_with_after_and_limit(api):
    execution_id = start(api)
    run_to_the_end(api, execution_id)
    topic = f"approval/{execution_id}"

    first = api.get(f"/events?topic={topic}&limit=1").json()
    rest = api.get(f"/events?topic={topic}&after={first['events'][0]['sequence_id']}").json()

    assert [e["event_type"] for e in first["events"]] == ["suspend"]
    assert first["has_more"] is True
    assert [e["event_type"] for e in rest["events"]] == ["resume"]
    assert rest["has_more"] is False


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=1001", "after=-1", "execution_id=not-a-uuid", "topic=a%00b"]
)
def test_bad_event_queries_are_422(api, query):
    response = api.get(f"/events?{query}")

    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


# -- POST /events -----------------------------------------------------------------------------


def test_a_published_event_is_stored_and_listed(api):
    response = api.post(
        "/events", {"topic": "orders/42", "event_type": "shipped", "data": {"carrier": "ups"}}
    )

    assert response.status_code == 201
    sequence_id = response.json()["sequence_id"]
    event = Event.objects.get(sequence_id=sequence_id)
    assert (event.topic, event.event_type, event.data) == (
        "orders/42",
        "shipped",
        {"carrier": "ups"},
    )
    listed = api.get("/events?topic=orders/42").json()["events"]
    assert [e["sequence_id"] for e in listed] == [sequence_id]


@pytest.mark.parametrize(
    "event_type", ["suspend", "timeout", "execution_start", "step_finish", "execution_finish"]
)
def test_engine_event_types_cannot_be_forged(api, event_type):
    response = api.post("/events", {"topic": "x/1", "event_type": event_type, "data": {}})

    assert response.status_code == 422
    assert response.json()["code"] == "event_invalid"
    assert not Event.objects.filter(topic="x/1").exists()


@pytest.mark.parametrize(
    "body",
    [
        {"event_type": "shipped"},
        {"topic": "", "event_type": "shipped"},
        {"topic": "t", "event_type": ""},
        {"topic": "t", "event_type": "has space"},
        {"topic": "t" * 451, "event_type": "shipped"},
    ],
)
def test_invalid_publications_are_422(api, body):
    response = api.post("/events", body)

    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


# -- SSE: one execution -----------------------------------------------------------------------


def test_the_stream_of_a_finished_execution_replays_everything_and_ends(api):
    execution_id = start(api)
    run_to_the_end(api, execution_id)
    logged = [e.sequence_id for e in Event.objects.filter(execution_id=execution_id)]

    async def scenario():
        response = await sse_open(f"/executions/{execution_id}/events/stream", key=api.approver_key)
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/event-stream")
        assert response["Cache-Control"] == "no-cache"
        return await sse_read(response)  # no ``until``: returns only when the stream ends

    events, text = async_to_sync(scenario)()

    assert text.startswith("retry: ")
    assert [int(e["id"]) for e in events] == logged
    assert [e["event"] for e in events] == [e["data"]["event_type"] for e in events]
    assert events[-1]["event"] == "execution_finish"
    assert events[-1]["data"]["data"]["status"] == "completed"
    assert {e["data"]["execution_id"] for e in events} == {execution_id}


def test_the_stream_resumes_after_last_event_id_or_after(api):
    execution_id = start(api)
    run_to_the_end(api, execution_id)
    logged = [e.sequence_id for e in Event.objects.filter(execution_id=execution_id)]
    path = f"/executions/{execution_id}/events/stream"

    async def scenario():
        by_header = await sse_read(
            await sse_open(path, key=api.approver_key, headers={"Last-Event-ID": str(logged[1])})
        )
        by_query = await sse_read(await sse_open(f"{path}?after={logged[2]}", key=api.approver_key))
        return by_header[0], by_query[0]

    by_header, by_query = async_to_sync(scenario)()

    assert [int(e["id"]) for e in by_header] == logged[2:]
    assert [int(e["id"]) for e in by_query] == logged[3:]


def test_a_stream_opened_after_the_suspend_still_sees_it_then_follows_live(api):
    execution_id = start(api)
    advance(execution_id)  # suspended before anyone listens

    async def scenario():
        response = await sse_open(f"/executions/{execution_id}/events/stream", key=api.approver_key)
        chunks = response.streaming_content
        text = ""
        try:
            async with asyncio.timeout(15):
                async for chunk in chunks:
                    text += chunk.decode()
                    if "event: suspend" in text and "event: resume" not in text:
                        # Decide, and run the "worker", while the stream is open.
                        answer = await sync_to_async(api.post)(
                            f"/executions/{execution_id}/resume",
                            {"step_key": "approval", "data": {"approved": True}},
                        )
                        assert answer.status_code == 202
                        await sync_to_async(advance)(execution_id)
        finally:
            await chunks.aclose()
        return text

    events = parse_sse(async_to_sync(scenario)())  # returns only once the stream has ended

    types = [e["event"] for e in events]
    assert types.index("suspend") < types.index("resume") < types.index("execution_finish")
    assert types[-1] == "execution_finish"
    assert events[types.index("resume")]["data"]["data"] == {"approved": True}


def test_the_stream_of_a_cancelled_execution_ends_after_its_trailing_events(api):
    execution_id = start(api)
    advance(execution_id)
    assert api.post(f"/executions/{execution_id}/cancel").status_code == 200

    async def scenario():
        response = await sse_open(f"/executions/{execution_id}/events/stream", key=api.approver_key)
        return await sse_read(response)

    events, _ = async_to_sync(scenario)()

    types = [e["event"] for e in events]
    assert types[-2:] == ["execution_finish", "cancel"]  # same transaction, both delivered


def test_a_stream_opened_after_the_end_of_the_log_closes(api):
    execution_id = start(api)
    run_to_the_end(api, execution_id)
    last = Event.objects.filter(execution_id=execution_id).last()

    async def scenario():
        response = await sse_open(
            f"/executions/{execution_id}/events/stream?after={last.sequence_id}",
            key=api.approver_key,
        )
        return await sse_read(response, timeout=5)

    events, _ = async_to_sync(scenario)()

    assert events == []


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/executions/{unknown}/events/stream", "execution_not_found"),
        ("/executions/not-a-uuid/events/stream", "execution_not_found"),
        ("/executions/{id}/events/stream?workflow_id=test-typed", "execution_not_found"),
    ],
)
def test_streams_of_unknown_executions_are_404(api, path, code):
    execution_id = start(api)

    async def scenario():
        return await sse_open(
            path.format(unknown=uuid.uuid4(), id=execution_id), key=api.approver_key
        )

    response = async_to_sync(scenario)()

    assert response.status_code == 404
    assert response.json()["code"] == code


def test_a_bad_last_event_id_is_400(api):
    execution_id = start(api)

    async def scenario():
        return await sse_open(
            f"/executions/{execution_id}/events/stream",
            key=api.approver_key,
            headers={"Last-Event-ID": "yesterday"},
        )

    response = async_to_sync(scenario)()

    assert response.status_code == 400
    assert response.json()["code"] == "bad_request"


def test_streams_need_authentication(api):
    execution_id = start(api)

    async def scenario():
        return [
            await sse_open(f"/executions/{execution_id}/events/stream"),
            await sse_open("/events/stream?topic=x", key="pk_wrong"),
        ]

    responses = async_to_sync(scenario)()

    assert [r.status_code for r in responses] == [401, 401]


# -- SSE: one topic ---------------------------------------------------------------------------


def test_a_topic_stream_replays_and_follows_published_events(api):
    api.post("/events", {"topic": "orders/7", "event_type": "created", "data": {"n": 1}})
    api.post("/events", {"topic": "other", "event_type": "noise", "data": {}})

    async def scenario():
        response = await sse_open("/events/stream?topic=orders/7", key=api.approver_key)
        chunks = response.streaming_content
        text = ""
        try:
            async with asyncio.timeout(10):
                async for chunk in chunks:
                    text += chunk.decode()
                    if "event: created" in text and "event: shipped" not in text:
                        published = await sync_to_async(api.post)(
                            "/events",
                            {"topic": "orders/7", "event_type": "shipped", "data": {"n": 2}},
                        )
                        assert published.status_code == 201
                    if "event: shipped" in text:
                        break
        finally:
            await chunks.aclose()
        return text

    events = parse_sse(async_to_sync(scenario)())

    assert [(e["event"], e["data"]["data"]) for e in events] == [
        ("created", {"n": 1}),
        ("shipped", {"n": 2}),
    ]


def test_a_lifecycle_topic_stream_ends_after_the_finish(api):
    execution_id = start(api)
    run_to_the_end(api, execution_id)

    async def scenario():
        response = await sse_open(
            f"/events/stream?topic=workflow/test-approval/{execution_id}", key=api.approver_key
        )
        return await sse_read(response)

    events, _ = async_to_sync(scenario)()

    assert events[0]["event"] == "execution_start"
    assert events[-1]["event"] == "execution_finish"


def test_a_topic_stream_needs_a_topic(api):
    async def scenario():
        return await sse_open("/events/stream", key=api.approver_key)

    response = async_to_sync(scenario)()

    assert response.status_code == 422


# -- the stream's machinery -------------------------------------------------------------------


def test_an_idle_stream_sends_heartbeats(api):
    execution_id = start(api)
    advance(execution_id)  # waiting: the stream stays open

    async def scenario():
        stream = sse.event_stream(
            execution_id=uuid.UUID(execution_id), poll_interval=0.01, heartbeat_interval=0.05
        )
        text = ""
        try:
            async with asyncio.timeout(5):
                async for chunk in stream:
                    text += chunk
                    if ": keepalive" in text:
                        break
        finally:
            await stream.aclose()
        return text

    assert ": keepalive\n\n" in async_to_sync(scenario)()


def test_a_stream_reaching_its_maximum_age_ends_for_the_client_to_reconnect(api):
    execution_id = start(api)
    advance(execution_id)

    async def scenario():
        chunks = [
            chunk
            async for chunk in sse.event_stream(
                execution_id=uuid.UUID(execution_id), poll_interval=0.01, max_seconds=0.1
            )
        ]
        return "".join(chunks)

    text = async_to_sync(scenario)()

    assert "event: suspend" in text
    assert "execution_finish" not in text


def test_the_cursor_sends_a_late_commit_below_the_highest_id_once():
    """On PostgreSQL a transaction can commit an event after one with a higher id became
    visible; the stream must still send it, and only once."""
    now = timezone.now()
    Event.objects.create(sequence_id=100, topic="t", event_type="a", created_at=now)
    Event.objects.create(sequence_id=102, topic="t", event_type="c", created_at=now)
    cursor = sse.EventCursor(Event.objects.filter(topic="t"), after=0)

    assert [e["sequence_id"] for e in cursor.poll()] == [100, 102]
    Event.objects.create(sequence_id=101, topic="t", event_type="b", created_at=now)  # late
    assert [e["sequence_id"] for e in cursor.poll()] == [101]
    assert cursor.poll() == []
    # Once the window has passed, everything up to the highest id is settled.
    assert cursor.poll(now=now + 2 * sse.SETTLE_WINDOW) == []
    assert cursor.settled == 102


def test_publishing_pushes_nothing_into_a_stream_of_another_execution(api):
    first, second = start(api), start(api)
    services.event_publish(topic=f"approval/{second}", event_type="note", data={})
    advance(first)

    async def scenario():
        response = await sse_open(f"/executions/{first}/events/stream", key=api.approver_key)
        return await sse_read(
            response, until=lambda events: any(e["event"] == "suspend" for e in events)
        )

    events, _ = async_to_sync(scenario)()

    assert {e["data"]["execution_id"] for e in events} == {first}


def test_event_created_at_is_iso_formatted_in_streams(api):
    execution_id = start(api)
    advance(execution_id)

    async def scenario():
        response = await sse_open(f"/executions/{execution_id}/events/stream", key=api.approver_key)
        return await sse_read(response, until=lambda events: len(events) >= 1)

    events, _ = async_to_sync(scenario)()
    created = events[0]["data"]["created_at"]

    assert abs(timezone.datetime.fromisoformat(created) - timezone.now()) < timedelta(minutes=1)
