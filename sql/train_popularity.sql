-- Item popularity as known at training time: counts over training events only (a protocol's
-- held-out targets excluded), in total and over the last $window_days days before the newest
-- training event. Feeds the popularity baseline, negative sampling and beyond-accuracy metrics.
WITH ranked AS (
    SELECT item_idx, ts,
        row_number() OVER (PARTITION BY user_idx ORDER BY ts DESC, ingest_seq DESC, item_idx DESC)
            AS from_end,
        count(*) OVER (PARTITION BY user_idx) AS n
    FROM events
),
train AS (
    SELECT item_idx, ts FROM ranked
    WHERE CASE WHEN $protocol = 'temporal' THEN ts < $valid_cut
        ELSE NOT (n >= $min_events AND from_end <= 2) END
),
bounds AS (SELECT max(ts) AS t_max FROM train)
SELECT item_idx, count(*) AS n_train,
    count(*) FILTER (
        WHERE ts > (SELECT t_max FROM bounds) - to_microseconds(CAST($window_days * 86400e6 AS BIGINT))
    ) AS n_recent
FROM train
GROUP BY item_idx
ORDER BY item_idx
