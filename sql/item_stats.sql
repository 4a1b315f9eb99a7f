-- Per-item statistics: counts by event type, distinct users, first/last event, and popularity
-- over the last $window_days days before the newest event (what "trending" means here).
CREATE OR REPLACE TABLE item_stats AS
WITH bounds AS (SELECT max(ts) AS t_max FROM events)
SELECT
    i.item_idx, i.item_id,
    count(e.item_idx) AS n_events,
    count(DISTINCT e.user_idx) AS n_users,
    count(e.item_idx) FILTER (WHERE e.event_type = 'view') AS n_view,
    count(e.item_idx) FILTER (WHERE e.event_type = 'click') AS n_click,
    count(e.item_idx) FILTER (WHERE e.event_type = 'cart') AS n_cart,
    count(e.item_idx) FILTER (WHERE e.event_type = 'purchase') AS n_purchase,
    count(e.item_idx) FILTER (WHERE e.event_type = 'rating') AS n_rating,
    avg(e.value) FILTER (WHERE e.event_type = 'rating') AS mean_rating,
    count(e.item_idx) FILTER (
        WHERE e.ts > (SELECT t_max FROM bounds) - to_microseconds(CAST($window_days * 86400e6 AS BIGINT))
    ) AS n_recent,
    min(e.ts) AS first_ts,
    max(e.ts) AS last_ts
FROM items AS i
LEFT JOIN events AS e USING (item_idx)
GROUP BY i.item_idx, i.item_id
ORDER BY i.item_idx
