-- The event id index's rows for landing parts ($parts) it does not cover yet
-- (recsys/data/event_index.py): each event's id key and the part it landed in. The part's
-- sequence is read from its file name, as the index's lookups name parts by it.
SELECT
    event_id_key(event_id) AS id_key,
    CAST(regexp_extract(filename, 'part-([0-9]+)\.parquet$', 1) AS BIGINT) AS seq
FROM read_parquet($parts, filename = true, union_by_name = true)  -- old parts lack request_id
