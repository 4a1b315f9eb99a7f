-- Drop the served list of $user_id; returns the deleted rows' ranks (the caller counts them).
DELETE FROM recommendations WHERE user_id = $user_id RETURNING rank
