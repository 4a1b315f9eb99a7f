-- Append the new events (relation new_events) to the events table with their dense indices.
INSERT INTO events
SELECT n.event_id, n.user_id, n.item_id, u.user_idx, i.item_idx, n.event_type, n.ts, n.value,
    n.ingest_seq
FROM new_events AS n
JOIN user_map AS u USING (user_id)
JOIN item_map AS i USING (item_id)
