-- Per user of one interleaving experiment: requests won, lost and decided by the treatment's
-- team, for clicks and for purchases. A request is won when more of the treatment team's items
-- were clicked than the control team's (distinct items; a tie when equal, including none);
-- decided when either team got any credit (an item both models proposed, variant '<id>:both',
-- credits neither: a click on it alone is no decision). Relations: impressions (variant
-- '<id>:<team>' per item), attributed. Parameters: $experiment, $start, $now.
WITH shown AS (
    SELECT user_id, request_id, count(*) AS items
    FROM impressions
    WHERE starts_with(variant, $experiment || ':') AND user_id IS NOT NULL
      AND ts >= CAST($start AS TIMESTAMP) AND ts < CAST($now AS TIMESTAMP)
    GROUP BY user_id, request_id
),
credit AS (
    SELECT request_id,
           count(DISTINCT item_id) FILTER (WHERE event_type = 'click' AND variant LIKE '%:treatment')
             - count(DISTINCT item_id) FILTER (WHERE event_type = 'click' AND variant LIKE '%:control')
             AS click_margin,
           count(DISTINCT item_id) FILTER (WHERE event_type = 'click' AND NOT variant LIKE '%:both')
             AS clicked,
           count(DISTINCT item_id) FILTER (WHERE event_type = 'purchase' AND variant LIKE '%:treatment')
             - count(DISTINCT item_id) FILTER (WHERE event_type = 'purchase' AND variant LIKE '%:control')
             AS purchase_margin,
           count(DISTINCT item_id) FILTER (WHERE event_type = 'purchase' AND NOT variant LIKE '%:both')
             AS purchased
    FROM attributed
    WHERE starts_with(variant, $experiment || ':') AND request_id IS NOT NULL
    GROUP BY request_id
)
SELECT s.user_id,
       sum(s.items) AS impressions,
       count(*) FILTER (WHERE c.click_margin > 0) AS wins,
       count(*) FILTER (WHERE c.click_margin < 0) AS losses,
       count(*) FILTER (WHERE c.clicked > 0) AS decided,
       count(*) FILTER (WHERE c.purchase_margin > 0) AS purchase_wins,
       count(*) FILTER (WHERE c.purchase_margin < 0) AS purchase_losses,
       count(*) FILTER (WHERE c.purchased > 0) AS purchase_decided
FROM shown AS s
LEFT JOIN credit AS c USING (request_id)
GROUP BY s.user_id
ORDER BY s.user_id
