-- Quarantined rows by reason, over the quarantine parts in $files.
SELECT reason, count(*) AS n FROM read_parquet($files) GROUP BY reason ORDER BY reason
