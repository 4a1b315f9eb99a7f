-- Clean, deduplicated events of the landing parts in (relation landed) with sequence in
-- ($low, $high] that the events table does not hold yet, as temp table new_events. Late and
-- out-of-order events are kept: ordering happens by ts downstream. Ingestion already refuses
-- repeated ids, so duplicates are rare: a cheap integer hash finds the candidates and only
-- those are deduplicated exactly (first landed wins).
CREATE OR REPLACE TEMP TABLE new_events AS
WITH batch AS (
    SELECT * FROM landed AS l
    WHERE l.ingest_seq > $low AND l.ingest_seq <= $high
      AND NOT EXISTS (SELECT 1 FROM events AS e WHERE e.event_id = l.event_id)
),
suspects AS (
    SELECT hash(event_id) AS h FROM batch GROUP BY h HAVING count(*) > 1
)
SELECT * FROM batch WHERE hash(event_id) NOT IN (SELECT h FROM suspects)
UNION ALL
SELECT * FROM (
    SELECT * FROM batch WHERE hash(event_id) IN (SELECT h FROM suspects)
    QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY ingest_seq) = 1
)
