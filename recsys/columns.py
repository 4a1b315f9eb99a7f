"""One source of truth for column names and the event contract.

The same names are used as SQL aliases in ``sql/*.sql``; ``tests/unit/test_columns.py``
checks that the landing schemas, what ingestion writes, the store's event-type enum and the
model's event-type codes agree with these constants.
"""

from __future__ import annotations

import pyarrow as pa

USER_ID = "user_id"
ITEM_ID = "item_id"
EVENT_TYPE = "event_type"
TS = "ts"
VALUE = "value"
EVENT_ID = "event_id"
# Optional on an event: the recommendation response it came from (ties a click to what was
# shown, exactly; without it attribution falls back to a time window).
REQUEST_ID = "request_id"

# Added by ingestion.
INGEST_SEQ = "ingest_seq"
INGESTED_AT = "ingested_at"
SOURCE = "source"

# Item catalogue.
TITLE = "title"
CATEGORY = "category"
DESCRIPTION = "description"
CREATED_AT = "created_at"

# Dense indices (0 is reserved for padding).
USER_IDX = "user_idx"
ITEM_IDX = "item_idx"

EVENT_TYPES: tuple[str, ...] = ("view", "click", "cart", "purchase", "rating")
REQUIRED_EVENT_COLUMNS: tuple[str, ...] = (USER_ID, ITEM_ID, EVENT_TYPE, TS)
OPTIONAL_EVENT_COLUMNS: tuple[str, ...] = (VALUE, EVENT_ID)
ITEM_COLUMNS: tuple[str, ...] = (ITEM_ID, TITLE, CATEGORY, DESCRIPTION, CREATED_AT)

# What lands in the landing zone, in this order.
LANDING_EVENT_SCHEMA = pa.schema(
    [
        (EVENT_ID, pa.string()),
        (USER_ID, pa.string()),
        (ITEM_ID, pa.string()),
        (EVENT_TYPE, pa.string()),
        (TS, pa.timestamp("us")),  # UTC, naive
        (VALUE, pa.float64()),
        (INGEST_SEQ, pa.int64()),
        (INGESTED_AT, pa.timestamp("us")),
        (SOURCE, pa.string()),
        # Optional, added after the first parts were written: old parts lack the column, so
        # every reader of landing parts reads them by name (DuckDB union_by_name).
        (REQUEST_ID, pa.string()),
    ]
)

LANDING_ITEM_SCHEMA = pa.schema(
    [
        (ITEM_ID, pa.string()),
        (TITLE, pa.string()),
        (CATEGORY, pa.string()),
        (DESCRIPTION, pa.string()),
        (CREATED_AT, pa.timestamp("us")),
        (INGEST_SEQ, pa.int64()),
        (INGESTED_AT, pa.timestamp("us")),
        (SOURCE, pa.string()),
    ]
)

QUARANTINE_SCHEMA = pa.schema(
    [
        ("quarantine_id", pa.string()),
        ("kind", pa.string()),  # "event" or "item"
        ("reason", pa.string()),
        ("detail", pa.string()),
        (SOURCE, pa.string()),
        ("row_number", pa.int64()),
        ("raw", pa.string()),  # the row as JSON, verbatim strings
        (INGEST_SEQ, pa.int64()),
        (INGESTED_AT, pa.timestamp("us")),
    ]
)

# What the real-time service showed (the impressions zone): one row per item of an answer.
POSITION = "position"
SCORE = "score"
MODEL_VERSION = "model_version"
VARIANT = "variant"
SURFACE = "surface"
IMPRESSION_SCHEMA = pa.schema(
    [
        (REQUEST_ID, pa.string()),
        (USER_ID, pa.string()),  # null for an anonymous session
        (ITEM_ID, pa.string()),
        (POSITION, pa.int32()),  # 1-based
        (SCORE, pa.float64()),  # null for a popular-items fallback
        (MODEL_VERSION, pa.string()),
        (VARIANT, pa.string()),  # experiment arm or interleaving team; null outside experiments
        (SURFACE, pa.string()),  # "user" (GET by user id) or "session" (POST item ids)
        (TS, pa.timestamp("us")),  # UTC, naive, when the answer was sent
    ]
)
