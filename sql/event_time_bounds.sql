-- Newest event time among sequences <= $seen (what a model has learned from) and <= $high (what
-- the store holds): the two ends of a model's age.
SELECT
    max(ts) FILTER (WHERE ingest_seq <= $seen) AS newest_seen,
    max(ts) AS newest
FROM events
WHERE ingest_seq <= $high
