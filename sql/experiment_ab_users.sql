-- Per user and arm of one A/B experiment: impressions at positions <= $k, and how many of them
-- were clicked and purchased (credited by attribution.sql). Relations: impressions, attributed.
-- Parameters: $experiment (id; impressions carry variant '<id>:<arm>'), $k, $start, $now.
WITH shown AS (
    SELECT user_id, split_part(variant, ':', 2) AS arm, request_id, item_id
    FROM impressions
    WHERE starts_with(variant, $experiment || ':') AND position <= $k AND user_id IS NOT NULL
      AND ts >= CAST($start AS TIMESTAMP) AND ts < CAST($now AS TIMESTAMP)
),
credited AS (
    SELECT request_id, item_id,
           bool_or(event_type = 'click') AS clicked,
           bool_or(event_type = 'purchase') AS purchased
    FROM attributed
    WHERE starts_with(variant, $experiment || ':') AND request_id IS NOT NULL
    GROUP BY request_id, item_id
)
SELECT s.arm, s.user_id,
       count(*) AS impressions,
       count(*) FILTER (WHERE c.clicked) AS clicks,
       count(*) FILTER (WHERE c.purchased) AS purchases
FROM shown AS s
LEFT JOIN credited AS c USING (request_id, item_id)
GROUP BY s.arm, s.user_id
ORDER BY s.arm, s.user_id
