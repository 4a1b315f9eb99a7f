-- Every indexed item with its string id and category, by item index (row i is index i + 1).
SELECT item_idx, item_id, category FROM items ORDER BY item_idx
