-- Users active in the last $window_days days before the newest event (the batch-scoring
-- population), each with their last $max_len events by time (item index and event-type code,
-- as in user_sequences) and the items they purchased or rated (removed from their lists when
-- configured). Computed from the events table, so events appended by micro-batches count.
WITH bounds AS (SELECT max(ts) AS t_max FROM events),
active AS (
    SELECT user_idx
    FROM events
    GROUP BY user_idx
    HAVING max(ts) > (SELECT t_max FROM bounds) - to_microseconds(CAST($window_days * 86400e6 AS BIGINT))
),
recent AS (
    SELECT e.*
    FROM events AS e
    JOIN active USING (user_idx)
    QUALIFY row_number() OVER (PARTITION BY e.user_idx ORDER BY e.ts DESC, e.ingest_seq DESC, e.item_idx DESC) <= $max_len
),
bought AS (
    SELECT e.user_idx, list(DISTINCT e.item_idx) AS bought
    FROM events AS e
    JOIN active USING (user_idx)
    WHERE e.event_type IN ('purchase', 'rating')
    GROUP BY e.user_idx
)
SELECT
    u.user_id,
    r.user_idx,
    list(r.item_idx ORDER BY r.ts, r.ingest_seq, r.item_idx) AS item_seq,
    list(event_type_code(r.event_type)
        ORDER BY r.ts, r.ingest_seq, r.item_idx) AS type_seq,
    coalesce(any_value(b.bought), []) AS bought
FROM recent AS r
JOIN user_map AS u USING (user_idx)
LEFT JOIN bought AS b USING (user_idx)
GROUP BY u.user_id, r.user_idx
ORDER BY r.user_idx
