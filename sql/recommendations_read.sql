-- The served top-K lists: every user's, or only $user_id's when it is not NULL.
SELECT * FROM recommendations
WHERE $user_id IS NULL OR user_id = $user_id
ORDER BY user_id, rank
