-- Held-out events of sequence in ($cut, $high], each with the user's history before it (up to
-- $max_len events by time, any sequence <= $high): next-item cases that neither the champion
-- nor the challenger was trained on. Events with no history are skipped. A seeded hash picks
-- at most $max_events of them, the same ones for every model scored.
WITH touched AS (
    SELECT DISTINCT user_idx FROM events WHERE ingest_seq > $cut AND ingest_seq <= $high
),
ordered AS (
    SELECT
        e.user_idx, e.item_idx, e.ts, e.ingest_seq,
        list(e.item_idx) OVER w AS history,
        list(event_type_code(e.event_type)) OVER w
            AS type_history
    FROM events AS e
    JOIN touched USING (user_idx)
    WHERE e.ingest_seq <= $high
    WINDOW w AS (PARTITION BY e.user_idx ORDER BY e.ts, e.ingest_seq, e.item_idx
                 ROWS BETWEEN $max_len PRECEDING AND 1 PRECEDING)
)
SELECT user_idx, history, type_history, item_idx AS target
FROM ordered
WHERE ingest_seq > $cut AND len(history) > 0
ORDER BY hash(user_idx, item_idx, ts, ingest_seq, $seed)
LIMIT $max_events
