-- Give new quarantine rows (relation q_new) a stable id and drop the ones already quarantined
-- (relation q_old), so re-ingesting the same file never quarantines its bad rows twice.
WITH keyed AS (
    SELECT * REPLACE (
        md5(concat_ws(chr(31), kind, reason, source, CAST(row_number AS VARCHAR), coalesce(raw, '')))
            AS quarantine_id)
    FROM q_new
)
SELECT *
FROM keyed
WHERE quarantine_id NOT IN (SELECT quarantine_id FROM q_old)
ORDER BY row_number
