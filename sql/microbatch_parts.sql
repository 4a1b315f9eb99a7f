-- Events per ingestion sequence above the watermark $low: what a micro-batch may take. Whole
-- parts are the unit of a batch, so the watermark a model records is always a part boundary.
SELECT ingest_seq, count(*) AS n_events
FROM events
WHERE ingest_seq > $low
GROUP BY ingest_seq
ORDER BY ingest_seq
