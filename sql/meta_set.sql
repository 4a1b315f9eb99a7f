-- Upsert one key of the feature store's bookkeeping (e.g. the events watermark).
INSERT OR REPLACE INTO meta VALUES ($key, $value)
