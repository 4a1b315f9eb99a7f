-- Sizes from temp table online_items: the catalogue (coverage's denominator), all items the
-- report knows (the width of online_shown's bitmaps) and novelty's normaliser (events in the
-- period plus known items: add-one smoothing over the known items).
SELECT count(*) FILTER (WHERE listed) AS catalogue_items, count(*) AS known_items,
       coalesce(sum(n), 0) + count(*) AS mass
FROM online_items
