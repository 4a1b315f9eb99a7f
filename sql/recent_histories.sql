-- Each user's last $max_len events (by time) straight from landing parts (relation landed),
-- deduplicated by event id: the real-time service's starting state, read without touching the
-- feature store (whose single writer must never wait for the service).
WITH unique_events AS (
    SELECT * FROM landed
    QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY ingest_seq) = 1
)
SELECT
    user_id,
    list(item_id ORDER BY ts, ingest_seq, item_id)[-$max_len:] AS item_ids,
    list(event_type ORDER BY ts, ingest_seq, item_id)[-$max_len:] AS event_types,
    list(ts ORDER BY ts, ingest_seq, item_id)[-$max_len:] AS ts
FROM unique_events
GROUP BY user_id
