-- Named queues (STORAGE_API 6): each execution waits in one (ExecutionRecord.queue). A worker claims
-- from the index range of each (task, queue) it serves, so other queues' backlogs cost it nothing;
-- durable executions list --queue pages through the queue's listing index, as the other filters do.
-- Rows written before it are in the default queue.
ALTER TABLE executions ADD COLUMN queue TEXT NOT NULL DEFAULT 'default';
DROP INDEX executions_claim;
CREATE INDEX executions_claim ON executions (task_id, queue, ready_at) WHERE ready_at IS NOT NULL;
CREATE INDEX executions_queue ON executions (queue, created_at, execution_id COLLATE "C");
