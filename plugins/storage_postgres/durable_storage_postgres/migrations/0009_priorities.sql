-- Priorities (STORAGE_API 7): of the due executions a worker claims, the higher priorities first
-- (ExecutionRecord.priority, 0 to 1,000,000). A claim reads each (task, queue)'s priority levels
-- from this index, highest first (one seek finds the next level down), and in each level only the
-- due entries (a range on ready_at): executions not yet due, or of the levels below the ones it
-- takes, are never read. Rows written before it have priority 0.
ALTER TABLE executions ADD COLUMN priority integer NOT NULL DEFAULT 0;
DROP INDEX executions_claim;
CREATE INDEX executions_claim ON executions (task_id, queue, priority, ready_at) WHERE ready_at IS NOT NULL;
