-- Append ids of users never seen before (events of relation landed with sequence in
-- ($low, $high]) to user_map; indices never move.
INSERT INTO user_map
SELECT
    user_id,
    (SELECT coalesce(max(user_idx), 0) FROM user_map)
        + CAST(row_number() OVER (ORDER BY first_seen, user_id) AS INTEGER) AS user_idx,
    first_seen
FROM (
    SELECT user_id, min(ts) AS first_seen FROM landed
    WHERE ingest_seq > $low AND ingest_seq <= $high
    GROUP BY user_id
) AS candidates
WHERE user_id NOT IN (SELECT user_id FROM user_map)
