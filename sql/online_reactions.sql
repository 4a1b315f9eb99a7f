-- The reactions attribution judges, as temp table online_reactions (relation landed): clicks,
-- carts and purchases with event time in [$now - $hours - $window_minutes, $now], numbered n.
-- Parameters: $now, $hours, $window_minutes. Those before the period can only be credited by
-- the exact rule of attribution.sql (a client clock a little behind the service's).
CREATE OR REPLACE TEMP TABLE online_reactions AS
WITH bounds AS (
    SELECT CAST($now AS TIMESTAMP) AS t1,
           CAST($now AS TIMESTAMP) - to_microseconds(CAST($hours * 3600e6 AS BIGINT))
               - to_microseconds(CAST($window_minutes * 60e6 AS BIGINT)) AS t0
)
SELECT row_number() OVER () AS n, e.event_id, e.user_id, e.item_id, e.event_type, e.ts,
       e.request_id
FROM landed AS e, bounds AS b
WHERE e.event_type IN ('click', 'cart', 'purchase') AND e.ts >= b.t0 AND e.ts <= b.t1
