-- Landing parts ($parts) holding events of $user_id, with how many and the lowest sequence:
-- the parts forget-user rewrites, and the first watermark that trained on the user.
SELECT filename AS path, count(*) AS n, min(ingest_seq) AS first_seq
FROM read_parquet($parts, filename = true, union_by_name = true)  -- old parts lack request_id
WHERE user_id = $user_id
GROUP BY filename
ORDER BY filename
