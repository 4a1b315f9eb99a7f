-- Leave-last-out split over user_sequences: per user with at least $min_events events, the last
-- item is the test target, the second-last the validation target, and the rest is training.
-- Users with fewer events only train. history is what the model sees before the target.
CREATE OR REPLACE TABLE split_leave_last_out AS
SELECT user_idx, 'train' AS split,
    CASE WHEN n >= $min_events THEN item_seq[1:n - 2] ELSE item_seq END AS history,
    CAST(NULL AS INTEGER) AS target
FROM (SELECT user_idx, item_seq, len(item_seq) AS n FROM user_sequences)
UNION ALL
SELECT user_idx, 'valid', item_seq[1:n - 2], item_seq[n - 1]
FROM (SELECT user_idx, item_seq, len(item_seq) AS n FROM user_sequences)
WHERE n >= $min_events
UNION ALL
SELECT user_idx, 'test', item_seq[1:n - 1], item_seq[n]
FROM (SELECT user_idx, item_seq, len(item_seq) AS n FROM user_sequences)
WHERE n >= $min_events
ORDER BY user_idx, split
