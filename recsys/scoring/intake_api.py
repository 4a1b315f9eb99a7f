"""``POST /events``: one event or a JSON array of them, acknowledged once on disk.

The body is parsed here, not by a pydantic model per event: a model would reject the whole
request for one bad row and cost more than the rest of the path. Each entry goes to the intake
journal as it came (``recsys.data.intake``), where the file-ingestion validation decides; the
answer lists each rejected entry's index and reason, and the bad rows are quarantined with
their reasons like a file's. Statuses: 200 when at least one event was accepted, 422 when none
was (the bad rows are journaled all the same), 400 for a body that is not JSON, 413 for a body
or an array over the limits, 415 for a content type other than JSON, 503 when the journal cannot
be written (nothing of that request was accepted: send it again).
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, Field

from recsys.config import IntakeConfig
from recsys.data.intake import (
    Intake,
    IntakeUnavailable,
    UnreadableRequest,
    json_kind,
    request_rows,
)
from recsys.data.journal import dumps, loads


class Event(BaseModel):
    """The event contract (docs only: the body is validated row by row, not by this model)."""

    user_id: str
    item_id: str
    event_type: str = Field(description="view, click, cart, purchase or rating.")
    ts: str = Field(description="ISO-8601 (naive = UTC) or epoch seconds, ms or µs.")
    value: float | None = Field(None, description="A rating, a price; optional.")
    event_id: str | None = Field(None, description="Client id; by default a hash of the "
                                                   "content, so a resent event lands once.")
    request_id: str | None = Field(None, description="The recommendation answer the event "
                                                     "came from (its request_id), if any.")


class Rejection(BaseModel):
    index: int = Field(description="0-based position of the entry in the request.")
    reason: str = Field(description="The quarantine reason, as for a file's rows.")
    detail: str | None = None


class EventsAnswer(BaseModel):
    accepted: int = Field(description="Entries on disk, to land within a second or so "
                                      "(exact repeats of one another count once when landed).")
    rejected: list[Rejection] = Field(description="Entries that will not land, with why; "
                                                  "they are kept in the quarantine.")


def events_router(intake: Intake, config: IntakeConfig) -> APIRouter:
    router = APIRouter()
    body_schema = {"oneOf": [Event.model_json_schema(),
                             {"type": "array", "items": Event.model_json_schema(),
                              "maxItems": config.max_request_events}]}

    @router.post(
        "/events", response_model=EventsAnswer,
        summary="Post events (one object or an array); durable before the answer",
        openapi_extra={"requestBody": {"required": True, "content": {
            "application/json": {"schema": body_schema}}}},
        responses={422: {"description": "No entry was usable (each is listed in rejected)."},
                   413: {"description": "Body or array over the limits."},
                   415: {"description": "Content type is not application/json."},
                   503: {"description": "The journal cannot be written; nothing accepted."}})
    async def post_events(request: Request) -> Response:
        entries = _entries(await _body(request, config), config)
        try:
            outcome = await intake.submit(request_rows(entries))
        except IntakeUnavailable as exc:
            raise HTTPException(503, str(exc), headers={"Retry-After": "1"}) from exc
        except UnreadableRequest as exc:
            raise HTTPException(400, str(exc)) from exc
        answer = {"accepted": outcome.accepted, "rejected": outcome.rejected}
        if not outcome.accepted:
            answer["detail"] = (f"none of the {len(entries)} events is usable; each is listed "
                                "in rejected with its reason")
        return Response(dumps(answer), status_code=200 if outcome.accepted else 422,
                        media_type="application/json")

    return router


async def _body(request: Request, config: IntakeConfig) -> bytes:
    kind, _, params = request.headers.get("content-type", "").partition(";")
    charset = params.partition("charset=")[2].strip().strip('"').lower()
    if kind.strip().lower() != "application/json" or charset not in ("", "utf-8", "utf8"):
        raise HTTPException(415, "send the events as JSON: Content-Type: application/json "
                                 f"(got {request.headers.get('content-type') or 'none'})")
    limit = config.max_request_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"the body is {int(declared):,} bytes; at most {limit:,} "
                                 "per request: send fewer events per request")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"the body is over {limit:,} bytes, the most per request: "
                                     "send fewer events per request")
    return bytes(body)


def _entries(body: bytes, config: IntakeConfig) -> list:
    try:
        data = loads(body)
    except ValueError as exc:
        raise HTTPException(400, f"the body is not valid JSON: {exc}") from None
    if isinstance(data, dict):
        return [data]
    if not isinstance(data, list):
        raise HTTPException(422, "expected one event (a JSON object) or a JSON array of "
                                 f"events, got {json_kind(data)}")
    if not data:
        raise HTTPException(422, "the array holds no events")
    if len(data) > config.max_request_events:
        raise HTTPException(413, f"{len(data):,} events in one request; at most "
                                 f"{config.max_request_events:,}: split the array")
    return data
