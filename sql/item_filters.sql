-- What business filters look at, by item index: category and release time.
SELECT item_idx, category, created_at FROM items ORDER BY item_idx
