-- Online metrics per model version (NULL: all versions together; an impression without one is
-- 'unknown') and hour of impression (NULL: the whole period) from
-- temp table online_shown (online_shown.sql: one row per version and hour of the period) and the
-- credited reactions (relation attributed: rows of attribution.sql). Parameters: $k,
-- $catalogue_items.
--   impressions; users (known users with an answer); requests (answers);
--   ctr_at_k       impressions at positions <= $k with >= 1 credited click / impressions there;
--   cart_rate, purchase_rate   impressions with >= 1 credited cart (purchase) / impressions;
--   coverage       distinct items served / $catalogue_items;
--   novelty        mean self-information of the items shown (online_items.sql defines it).
-- Impressions are credited to the hour they were shown in, whenever the reaction came.
WITH shown AS (
    SELECT model_version, make_timestamp(hour * 3600000000) AS hour,
           CAST(sum(impressions) AS BIGINT) AS impressions,
           CAST(sum(requests) AS BIGINT) AS requests,
           CAST(sum(impressions_at_k) AS BIGINT) AS impressions_at_k,
           coalesce(bit_count(bit_or(item_bits)), 0)
               + len(list_distinct(flatten(list(unknown_items)))) AS items,
           sum(surprise) AS surprise
    FROM online_shown
    GROUP BY GROUPING SETS ((model_version, hour), (model_version), (hour), ())
    HAVING count(*) > 0  -- no grand total of nothing
),
people AS (
    SELECT model_version, make_timestamp(hour * 3600000000) AS hour,
           count(DISTINCT user_id) AS users
    FROM (SELECT model_version, hour, unnest(user_list) AS user_id FROM online_shown)
    GROUP BY GROUPING SETS ((model_version, hour), (model_version), (hour), ())
),
credited AS (  -- one row per credited impression, its reactions as flags
    SELECT model_version, shown_ts, position,
           bool_or(event_type = 'click') AS clicked,
           bool_or(event_type = 'cart') AS carted,
           bool_or(event_type = 'purchase') AS purchased
    FROM attributed
    WHERE matched_by IS NOT NULL
    GROUP BY request_id, position, model_version, shown_ts
),
reacted AS (
    SELECT model_version, date_trunc('hour', shown_ts) AS hour,
           count(*) FILTER (WHERE clicked AND position <= $k) AS clicked_at_k,
           count(*) FILTER (WHERE clicked) AS clicked,
           count(*) FILTER (WHERE carted) AS carted,
           count(*) FILTER (WHERE purchased) AS purchased
    FROM credited
    GROUP BY GROUPING SETS ((model_version, date_trunc('hour', shown_ts)), (model_version),
                            (date_trunc('hour', shown_ts)), ())
)
SELECT s.model_version, s.hour, s.impressions, coalesce(u.users, 0) AS users, s.requests,
       s.impressions_at_k,
       coalesce(r.clicked_at_k, 0) AS clicked_at_k,
       coalesce(r.clicked, 0) AS clicked,
       coalesce(r.carted, 0) AS carted,
       coalesce(r.purchased, 0) AS purchased,
       coalesce(r.clicked_at_k, 0) / nullif(s.impressions_at_k, 0) AS ctr_at_k,
       coalesce(r.carted, 0) / s.impressions AS cart_rate,
       coalesce(r.purchased, 0) / s.impressions AS purchase_rate,
       s.items, s.items / nullif($catalogue_items, 0) AS coverage,
       s.surprise / s.impressions AS novelty
FROM shown AS s
LEFT JOIN people AS u
    ON u.model_version IS NOT DISTINCT FROM s.model_version AND u.hour IS NOT DISTINCT FROM s.hour
LEFT JOIN reacted AS r
    ON r.model_version IS NOT DISTINCT FROM s.model_version AND r.hour IS NOT DISTINCT FROM s.hour
ORDER BY s.model_version NULLS FIRST, s.hour NULLS FIRST
