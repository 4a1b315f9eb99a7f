-- Rows of one split ($split: train, valid or test) of one protocol ($protocol: leave_last_out
-- or temporal), in user order: what the training data module and the evaluator read.
SELECT user_idx, history, type_history, target FROM split_leave_last_out
WHERE $protocol = 'leave_last_out' AND split = $split
UNION ALL
SELECT user_idx, history, type_history, target FROM split_temporal
WHERE $protocol = 'temporal' AND split = $split
ORDER BY user_idx
