-- Leave-last-out split over user_sequences: per user with at least $min_events events, the last
-- item is the test target, the second-last the validation target, and the rest is training.
-- Users with fewer events only train. history is what the model sees before the target, and
-- type_history the event types of those items.
CREATE OR REPLACE TABLE split_leave_last_out AS
WITH s AS (SELECT user_idx, item_seq, type_seq, len(item_seq) AS n FROM user_sequences)
SELECT user_idx, 'train' AS split,
    CASE WHEN n >= $min_events THEN item_seq[1:n - 2] ELSE item_seq END AS history,
    CASE WHEN n >= $min_events THEN type_seq[1:n - 2] ELSE type_seq END AS type_history,
    CAST(NULL AS INTEGER) AS target
FROM s
UNION ALL
SELECT user_idx, 'valid', item_seq[1:n - 2], type_seq[1:n - 2], item_seq[n - 1]
FROM s WHERE n >= $min_events
UNION ALL
SELECT user_idx, 'test', item_seq[1:n - 1], type_seq[1:n - 1], item_seq[n]
FROM s WHERE n >= $min_events
ORDER BY user_idx, split
