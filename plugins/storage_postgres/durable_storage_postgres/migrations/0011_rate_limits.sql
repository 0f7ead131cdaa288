-- Rate limits: a claim of a task with rate_limit counts the task's executions started in the last
-- period (started_at >= now - period), under the per-task advisory lock; this index keeps that count a range scan.
CREATE INDEX executions_started ON executions (task_id, started_at);
