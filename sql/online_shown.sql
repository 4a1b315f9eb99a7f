-- What was shown, per model version and hour of the period [$now - $hours, $now), as temp table
-- online_shown (relations: impressions, online_items). Parameters: $now, $hours, $k, and from
-- online_catalogue.sql $known_items (the bitmaps' width) and $mass (events in the period plus
-- known items).
-- The one pass over the period's impressions that the metrics need, each joined to its item:
-- counts (requests are answers: each has a row at position 1), the users of the answers (from
-- those rows; repeats are dropped later), impressions per position (the position-bias curve), a bitmap of the items served (bit i = item of index i in online_items;
-- ORed over hours, distinct items over the period), served items the report does not know, and
-- the summed self-information of the items shown, -log2 p(item) with
-- p(item) = (events of the item in the period + 1) / (events in the period + known items).
-- Bitmaps over a 72-row group keep distinct items exact without a hash table of
-- (version, hour, item): the join is on the small item table, the aggregate on 24 hours.
CREATE OR REPLACE TEMP TABLE online_shown AS
WITH bounds AS (
    SELECT CAST($now AS TIMESTAMP) AS t1,
           CAST($now AS TIMESTAMP) - to_microseconds(CAST($hours * 3600e6 AS BIGINT)) AS t0
)
SELECT coalesce(i.model_version, 'unknown') AS model_version, date_trunc('hour', i.ts) AS hour,
       count(*) AS impressions,
       count(*) FILTER (WHERE i.position = 1) AS requests,
       count(*) FILTER (WHERE i.position <= $k) AS impressions_at_k,
       histogram(i.position) AS per_position,
       coalesce(list(i.user_id) FILTER (WHERE i.position = 1 AND i.user_id IS NOT NULL), [])
           AS user_list,
       bitstring_agg(o.idx, 1, greatest($known_items, 1)) AS item_bits,
       list_distinct(coalesce(list(i.item_id) FILTER (WHERE o.idx IS NULL), []))
           AS unknown_items,
       sum(-log2((coalesce(o.n, 0) + 1) / greatest($mass, 1))) AS surprise
FROM impressions AS i
JOIN bounds AS b ON i.ts >= b.t0 AND i.ts < b.t1
LEFT JOIN online_items AS o ON o.item_id = i.item_id
GROUP BY ALL
