-- Replay: $n users drawn by a seeded hash among those with events at or below the watermark $low
-- (users in $exclude, the guard set, never), each with their last $max_len events up to $low.
-- Mixed into a fine-tune so that learning the newest minute does not erase the past.
WITH users AS (
    SELECT user_idx
    FROM (SELECT DISTINCT user_idx FROM events WHERE ingest_seq <= $low)
    WHERE NOT list_contains($exclude, user_idx)
    ORDER BY hash(user_idx, $seed)
    LIMIT $n
),
recent AS (
    SELECT e.*
    FROM events AS e
    JOIN users USING (user_idx)
    WHERE e.ingest_seq <= $low
    QUALIFY row_number() OVER (PARTITION BY e.user_idx ORDER BY e.ts DESC, e.ingest_seq DESC, e.item_idx DESC) <= $max_len
)
SELECT
    user_idx,
    list(item_idx ORDER BY ts, ingest_seq, item_idx) AS item_seq,
    list(event_type_code(event_type)
        ORDER BY ts, ingest_seq, item_idx) AS type_seq
FROM recent
GROUP BY user_idx
ORDER BY user_idx
