-- Item-to-item CF: how often item j follows item i within $window positions in the same
-- training sequence (relation train_sequences: user_idx, history), counted both ways and
-- normalised by sqrt(count_i * count_j) (cosine). Keeps the $top_n strongest neighbours per item.
WITH flat AS (
    SELECT user_idx, unnest(history) AS item_idx, generate_subscripts(history, 1) AS pos
    FROM train_sequences
),
pairs AS (
    SELECT a.item_idx AS src, b.item_idx AS dst
    FROM flat AS a JOIN flat AS b
        ON a.user_idx = b.user_idx AND b.pos > a.pos AND b.pos <= a.pos + $window
    WHERE a.item_idx <> b.item_idx
),
both_ways AS (
    SELECT src, dst FROM pairs UNION ALL SELECT dst, src FROM pairs
),
counts AS (SELECT item_idx, count(*) AS n FROM flat GROUP BY item_idx),
scored AS (
    SELECT p.src, p.dst, count(*) / sqrt(any_value(cs.n) * any_value(cd.n)) AS weight
    FROM both_ways AS p
    JOIN counts AS cs ON cs.item_idx = p.src
    JOIN counts AS cd ON cd.item_idx = p.dst
    GROUP BY p.src, p.dst
)
SELECT src, dst, weight FROM scored
QUALIFY row_number() OVER (PARTITION BY src ORDER BY weight DESC, dst) <= $top_n
ORDER BY src, weight DESC, dst
