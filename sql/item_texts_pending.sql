-- Items whose text has no embedding yet from encoder $encoder, or whose text changed since it was
-- encoded. Items without any text are skipped: the model gives them a zero text vector.
WITH texts AS (
    SELECT item_idx, concat_ws(' | ', title, category, description) AS text
    FROM items
    WHERE coalesce(title, category, description) IS NOT NULL
)
SELECT t.item_idx, t.text, hash(t.text) AS text_hash
FROM texts AS t
LEFT JOIN item_text_embeddings AS e USING (item_idx)
WHERE e.item_idx IS NULL OR e.text_hash <> hash(t.text) OR e.encoder <> $encoder
ORDER BY t.item_idx
