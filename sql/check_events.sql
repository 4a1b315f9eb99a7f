-- The HTTP intake's answer for one group of posted events (registered as raw_events, as for
-- validate_events.sql): the row checks of checked_events, the very checks file ingestion runs, so
-- the same reasons; without what only landing needs (event ids, content hashes, quarantine text,
-- the ranking of repeats), which is half of validate_events.sql's cost for a handful of rows (a
-- DuckDB call is mostly binding and planning at that size). The intake compares the rows of a
-- group with one another itself (recsys.data.intake). Parameters as validate_events.sql.
SELECT _row, problem, raw_event_id AS event_id, user_id, item_id, event_type, ts, value
FROM checked_events('raw_events', $now, $max_future_seconds, $min_ts, $max_id_len, $event_types)
ORDER BY _row
