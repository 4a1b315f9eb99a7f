-- The items the online report knows, as temp table online_items (relations: catalogue, landed):
-- each item of the catalogue (the landed catalogue, or the landed events' items where no
-- catalogue has landed) or with an event in the period [$now - $hours, $now), with a dense index
-- (for the served-items bitmaps of coverage), its events of any type in the period, its
-- self-information -log2 p(item) (novelty) with p(item) = (events of the item in the period + 1) /
-- (events in the period + known items), add-one smoothed over the known items so that an item
-- nobody touched counts as the rarest rather than as infinite, and whether it is in the
-- catalogue (the denominator of coverage). Parameters: $now, $hours.
CREATE OR REPLACE TEMP TABLE online_items AS
WITH bounds AS (
    SELECT CAST($now AS TIMESTAMP) AS t1,
           CAST($now AS TIMESTAMP) - to_microseconds(CAST($hours * 3600e6 AS BIGINT)) AS t0
),
listed AS (SELECT DISTINCT item_id FROM catalogue),
popularity AS (
    SELECT e.item_id, count(*) AS n
    FROM landed AS e, bounds AS b
    WHERE e.ts >= b.t0 AND e.ts < b.t1
    GROUP BY e.item_id
)
SELECT item_id, CAST(row_number() OVER (ORDER BY item_id) AS INTEGER) AS idx,
       coalesce(p.n, 0) AS n,
       -log2((coalesce(p.n, 0) + 1) / (sum(coalesce(p.n, 0)) OVER () + count(*) OVER ())) AS bits,
       l.item_id IS NOT NULL AS listed
FROM listed AS l
FULL JOIN popularity AS p USING (item_id)
