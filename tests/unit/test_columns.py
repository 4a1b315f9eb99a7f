"""columns.py is the one source of truth: the landing schemas, SQL and the model agree with it."""

import re

import pandas as pd
import pyarrow.parquet as pq

from recsys import columns as C
from recsys import sql
from recsys.data.ingest import ingest_frame
from recsys.data.landing import LandingZone
from recsys.models.towers import N_EVENT_TYPES
from recsys.scoring.scorer import TYPE_CODE


def test_landing_schemas_are_built_from_the_constants():
    assert C.LANDING_EVENT_SCHEMA.names == [
        C.EVENT_ID, C.USER_ID, C.ITEM_ID, C.EVENT_TYPE, C.TS, C.VALUE,
        C.INGEST_SEQ, C.INGESTED_AT, C.SOURCE, C.REQUEST_ID]
    assert C.LANDING_ITEM_SCHEMA.names == [*C.ITEM_COLUMNS, C.INGEST_SEQ, C.INGESTED_AT,
                                           C.SOURCE]
    assert set(C.REQUIRED_EVENT_COLUMNS + C.OPTIONAL_EVENT_COLUMNS) < set(
        C.LANDING_EVENT_SCHEMA.names)
    assert {C.SOURCE, C.INGEST_SEQ, C.INGESTED_AT} < set(C.QUARANTINE_SCHEMA.names)


def test_what_lands_has_the_landing_schema_under_the_constant_names(paths):
    items = pd.DataFrame({C.ITEM_ID: ["i1"], C.TITLE: ["A"], C.CATEGORY: ["c"],
                          C.DESCRIPTION: ["d"], C.CREATED_AT: ["2024-01-01"]})
    events = pd.DataFrame({C.USER_ID: ["u1", "u1"], C.ITEM_ID: ["i1", "i2"],
                           C.EVENT_TYPE: ["view", "teleport"],
                           C.TS: ["2024-01-01T00:00:00Z"] * 2})
    ingest_frame(items, "items", kind="items", data_paths=paths)
    report = ingest_frame(events, "events", data_paths=paths)
    assert report.accepted == 1 and report.n_quarantined == 1
    zone = LandingZone(paths)
    [events_part], [items_part] = zone.event_parts(), zone.item_parts()
    assert pq.read_schema(events_part).remove_metadata() == C.LANDING_EVENT_SCHEMA
    assert pq.read_schema(items_part).remove_metadata() == C.LANDING_ITEM_SCHEMA
    assert zone.quarantine_parts()
    for part in zone.quarantine_parts():
        assert pq.read_schema(part).remove_metadata() == C.QUARANTINE_SCHEMA
    with sql.connect() as con:  # DuckDB reads them under the same names the SQL files use
        cols = con.read_parquet(str(events_part)).columns
    assert cols == C.LANDING_EVENT_SCHEMA.names


def test_event_types_agree_with_the_sql_enum_and_the_model():
    schema = sql.load("features_schema")
    enum = re.search(r"event_kind AS ENUM \(([^)]*)\)", schema).group(1)
    assert tuple(t.strip().strip("'") for t in enum.split(",")) == C.EVENT_TYPES
    # Codes: 0 is padding, then the types in order, in the model and the scorer alike.
    assert N_EVENT_TYPES == len(C.EVENT_TYPES) + 1
    assert TYPE_CODE == {t: i + 1 for i, t in enumerate(C.EVENT_TYPES)}
