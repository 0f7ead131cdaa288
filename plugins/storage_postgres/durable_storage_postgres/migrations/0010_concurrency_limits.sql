-- Concurrency limits: a claim of a task with max_concurrency counts the task's running executions
-- that hold a lease, under a per-task advisory lock; this partial index keeps that count small.
CREATE INDEX executions_running ON executions (task_id) WHERE status = 'running' AND lease_expires_at IS NOT NULL;
