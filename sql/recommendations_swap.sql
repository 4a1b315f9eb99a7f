-- Replace the served top-K lists by the completed staging table in one transaction: readers see
-- the old lists or the new ones, never a mix.
BEGIN TRANSACTION;
DROP TABLE IF EXISTS recommendations;
ALTER TABLE recommendations_staging RENAME TO recommendations;
COMMIT;
