-- Temporal split by timestamp cut-offs, which cannot leak the future: training sequences use
-- events before $valid_cut; the validation target is a user's first event in [$valid_cut,
-- $test_cut) and the test target the first event at/after $test_cut, each with the user's
-- history before it (last $max_len items, with their event types in type_history). Users with
-- no history before a target are skipped.
CREATE OR REPLACE TABLE split_temporal AS
WITH ordered AS (
    SELECT user_idx, item_idx, ts,
        event_type_code(event_type) AS type_code,
        row_number() OVER (PARTITION BY user_idx ORDER BY ts, ingest_seq, item_idx) AS pos
    FROM events
),
train AS (
    SELECT user_idx, list(item_idx ORDER BY pos) AS items, list(type_code ORDER BY pos) AS types
    FROM ordered WHERE ts < $valid_cut GROUP BY user_idx
),
firsts AS (
    SELECT user_idx,
        min(pos) FILTER (WHERE ts >= $valid_cut AND ts < $test_cut) AS valid_pos,
        min(pos) FILTER (WHERE ts >= $test_cut) AS test_pos
    FROM ordered GROUP BY user_idx
),
targets AS (
    SELECT f.user_idx, 'valid' AS split, f.valid_pos AS pos FROM firsts AS f WHERE f.valid_pos IS NOT NULL
    UNION ALL
    SELECT f.user_idx, 'test', f.test_pos FROM firsts AS f WHERE f.test_pos IS NOT NULL
),
with_history AS (
    SELECT t.user_idx, t.split,
        list(o.item_idx ORDER BY o.pos) FILTER (WHERE o.pos < t.pos
            AND (t.split = 'valid' OR o.ts < $test_cut)) AS history,
        list(o.type_code ORDER BY o.pos) FILTER (WHERE o.pos < t.pos
            AND (t.split = 'valid' OR o.ts < $test_cut)) AS type_history,
        any_value(o.item_idx) FILTER (WHERE o.pos = t.pos) AS target
    FROM targets AS t JOIN ordered AS o USING (user_idx)
    GROUP BY t.user_idx, t.split
)
SELECT user_idx, 'train' AS split, items[greatest(len(items) - $max_len + 1, 1):] AS history,
    types[greatest(len(types) - $max_len + 1, 1):] AS type_history, CAST(NULL AS INTEGER) AS target
FROM train
UNION ALL
SELECT user_idx, split, history[greatest(len(history) - $max_len + 1, 1):],
    type_history[greatest(len(type_history) - $max_len + 1, 1):], target
FROM with_history
WHERE len(history) > 0
ORDER BY user_idx, split
