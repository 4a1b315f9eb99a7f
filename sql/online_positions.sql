-- The position-bias curve: per model version (NULL: all versions) and list position over the
-- period, impressions (temp table online_shown), those credited with >= 1 click (relation
-- attributed: rows of attribution.sql) and their ratio.
WITH shown AS (
    SELECT model_version, CAST(entry.key AS INTEGER) AS position, CAST(sum(entry.value) AS BIGINT)
           AS impressions
    FROM (SELECT model_version, unnest(map_entries(per_position)) AS entry FROM online_shown)
    GROUP BY GROUPING SETS ((model_version, position), (position))
),
clicked AS (
    SELECT model_version, position,
           count(DISTINCT request_id) AS clicked
    FROM attributed
    WHERE matched_by IS NOT NULL AND event_type = 'click'
    GROUP BY GROUPING SETS ((model_version, position), (position))
)
SELECT s.model_version, s.position, s.impressions, coalesce(c.clicked, 0) AS clicked,
       coalesce(c.clicked, 0) / s.impressions AS ctr
FROM shown AS s
LEFT JOIN clicked AS c
    ON c.model_version IS NOT DISTINCT FROM s.model_version AND c.position = s.position
ORDER BY s.model_version NULLS FIRST, s.position
