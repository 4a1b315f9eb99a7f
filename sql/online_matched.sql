-- How the period's reactions were credited (relation attributed, rows of attribution.sql): per
-- event type, how many exactly by request_id, by the window rule, and not at all.
SELECT event_type,
       count(*) FILTER (WHERE matched_by = 'exact') AS exact,
       count(*) FILTER (WHERE matched_by = 'window') AS window,
       count(*) FILTER (WHERE matched_by IS NULL) AS none
FROM attributed
GROUP BY event_type
ORDER BY CASE event_type WHEN 'click' THEN 1 WHEN 'cart' THEN 2 ELSE 3 END
