-- Append the events of the landing parts in (relation landed) with sequence in ($low, $high] to
-- the events table, ids mapped to indices (the maps are appended first). Late and out-of-order
-- events are kept: ordering happens by ts downstream. Ingestion lets each event id land once
-- and the watermark moves in the same transaction, so nothing here can be a repeat.
INSERT INTO events
SELECT u.user_idx, i.item_idx, l.event_type, l.ts, l.value, l.ingest_seq
FROM landed AS l
JOIN user_map AS u USING (user_id)
JOIN item_map AS i USING (item_id)
WHERE l.ingest_seq > $low AND l.ingest_seq <= $high
