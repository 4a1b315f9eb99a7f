-- Rewrite an events table of the first layout (text event_id, user_id, item_id) into the
-- current one (features_schema.sql); the text ids live on in the maps.
CREATE TABLE events_v2 AS
SELECT user_idx, item_idx, CAST(event_type AS event_kind) AS event_type, ts, value, ingest_seq
FROM events;
DROP TABLE events;
ALTER TABLE events_v2 RENAME TO events;
