-- The event id index's rows for landing parts ($parts) it does not cover yet
-- (recsys/data/event_index.py): each event's id key and the part it landed in.
SELECT event_id_key(event_id) AS id_key, ingest_seq AS seq
FROM read_parquet($parts, union_by_name = true)  -- old parts lack request_id
