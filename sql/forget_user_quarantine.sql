-- Rows of one quarantine part ($path) to keep after forgetting $user_id. A row is dropped when
-- its raw JSON names the user, or when the raw line could not be parsed as a row at all
-- (malformed) and contains the id: such a line has no structure to check, and keeping a
-- forgotten user's data is the worse error.
SELECT *
FROM read_parquet($path)
WHERE NOT coalesce(
    CASE WHEN json_valid(raw) THEN json_extract_string(raw, '$.user_id') = $user_id
         ELSE contains(raw, $user_id) END, false)
ORDER BY row_number
