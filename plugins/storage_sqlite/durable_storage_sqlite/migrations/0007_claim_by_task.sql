-- claim_executions(task_ids=...) (STORAGE_API 5): a worker claims only the tasks it defines, each
-- from its own range of this index, earliest ready_at first, so ready executions of other tasks,
-- however many, are never read. It replaces the index on ready_at alone (one index to update per
-- write of ready_at, as before); a claim of any task scans it and sorts.
DROP INDEX executions_ready_at;
CREATE INDEX executions_claim ON executions (task_id, ready_at) WHERE ready_at IS NOT NULL;
