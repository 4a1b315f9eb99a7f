-- Append one scored chunk (relation chunk) to the staging table.
INSERT INTO recommendations_staging SELECT * FROM chunk
