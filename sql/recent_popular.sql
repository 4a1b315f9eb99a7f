-- The $n items with most events in the last $window_days days before the newest landed event
-- (relation landed): what an unknown user is shown.
WITH bounds AS (SELECT max(ts) AS t_max FROM landed)
SELECT item_id, count(*) AS n
FROM landed
WHERE ts > (SELECT t_max FROM bounds) - to_microseconds(CAST($window_days * 86400e6 AS BIGINT))
GROUP BY item_id
ORDER BY n DESC, item_id
LIMIT $n
