-- Export the served lists to Parquet at $path (a temp name the caller renames into place).
COPY (SELECT * FROM recommendations ORDER BY user_id, rank) TO $path (FORMAT parquet, COMPRESSION zstd)
