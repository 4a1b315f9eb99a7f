-- What was shown, per model version and hour of the period [$now - $hours, $now), as temp table
-- online_shown (relations: impressions, online_items, online_reactions). Parameters: $now,
-- $hours, $k, and from online_catalogue.sql $known_items (the bitmaps' width) and $mass (events
-- in the period plus known items: an unknown item's -log2 p is log2 $mass).
-- The one pass over the period's impressions, each joined to its item and to the reactions that
-- could credit it, that attribution and the metrics share (reading the impressions costs more
-- than the joins; hour is whole hours since 1970, cheaper than a timestamp to group by):
--   counts (requests are answers: each has a row at position 1), the users of the answers (from
--   those rows; repeats are dropped later), impressions per position (the position-bias curve);
--   a bitmap of the items served (bit i: the item of index i in online_items; ORed over hours,
--   the distinct items of the period, exact without a hash table of (version, hour, item)), and
--   the served items the report does not know; the summed self-information of the items shown;
--   candidates: the impressions that share a key with reactions, with those reactions (n), for
--   attribution.sql to judge. A reaction looks for impressions of its item to its user, and,
--   when it names a request, for that request's anonymous impressions of its item.
CREATE OR REPLACE TEMP TABLE online_shown AS
WITH bounds AS (
    SELECT CAST($now AS TIMESTAMP) AS t1,
           CAST($now AS TIMESTAMP) - to_microseconds(CAST($hours * 3600e6 AS BIGINT)) AS t0
),
known AS (  -- one row per key, so that a join never repeats an impression
    SELECT item_id, user_id, list(n) AS reactions
    FROM online_reactions
    GROUP BY item_id, user_id
),
anonymous AS (
    SELECT item_id, request_id, list(n) AS reactions
    FROM online_reactions
    WHERE request_id IS NOT NULL
    GROUP BY item_id, request_id
)
SELECT coalesce(i.model_version, 'unknown') AS model_version,
       epoch_us(i.ts) // 3600000000 AS hour,
       count(*) AS impressions,
       count(*) FILTER (WHERE i.position = 1) AS requests,
       count(*) FILTER (WHERE i.position <= $k) AS impressions_at_k,
       histogram(i.position) AS per_position,
       coalesce(list(i.user_id) FILTER (WHERE i.position = 1 AND i.user_id IS NOT NULL), [])
           AS user_list,
       bitstring_agg(o.idx, 1, greatest($known_items, 1)) AS item_bits,
       list_distinct(coalesce(list(i.item_id) FILTER (WHERE o.idx IS NULL), []))
           AS unknown_items,
       sum(coalesce(o.bits, log2(greatest($mass, 1)))) AS surprise,
       -- CASE builds the struct only for the few rows with reactions
       coalesce(list(CASE WHEN r.reactions IS NOT NULL OR a.reactions IS NOT NULL THEN {
           'request_id': i.request_id, 'position': i.position, 'variant': i.variant,
           'ts': i.ts, 'anonymous': i.user_id IS NULL,
           'reactions': coalesce(r.reactions, a.reactions)} END)
           FILTER (WHERE r.reactions IS NOT NULL OR a.reactions IS NOT NULL), []) AS candidates
FROM impressions AS i
JOIN bounds AS b ON i.ts >= b.t0 AND i.ts < b.t1
LEFT JOIN online_items AS o ON o.item_id = i.item_id
LEFT JOIN known AS r ON r.item_id = i.item_id AND r.user_id = i.user_id
LEFT JOIN anonymous AS a
    ON a.item_id = i.item_id AND a.request_id = CASE WHEN i.user_id IS NULL THEN i.request_id END
GROUP BY ALL
