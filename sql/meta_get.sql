-- Read one key of the feature store's bookkeeping; no row when unset.
SELECT value FROM meta WHERE key = $key
