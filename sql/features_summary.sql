-- One-row summary of the feature store for logs and the CLI.
SELECT
    (SELECT count(*) FROM events) AS events,
    (SELECT count(*) FROM user_map) AS users,
    (SELECT count(*) FROM item_map) AS items,
    (SELECT count(*) FROM items WHERE title IS NOT NULL) AS items_with_text,
    (SELECT min(ts) FROM events) AS first_ts,
    (SELECT max(ts) FROM events) AS last_ts,
    (SELECT count(*) FROM split_leave_last_out WHERE split = 'valid') AS loo_valid_users,
    (SELECT count(*) FROM split_temporal WHERE split = 'test') AS temporal_test_users
