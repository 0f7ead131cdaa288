-- Fewer indexes for every execution to update: each index a write touches costs a B-tree update
-- and about one WAL page per transaction. Three served only rare needs; what replaces them costs
-- nothing to executions of tasks without a limit.
--
-- Concurrency limits: only the claims of tasks with max_concurrency or rate_limit set is_limited,
-- and only those rows enter the index the count reads. Every row running now is flagged: counting
-- too many for a moment is safe, too few is not.
ALTER TABLE executions ADD COLUMN is_limited INTEGER NOT NULL DEFAULT 0;
UPDATE executions SET is_limited = 1 WHERE status = 'running' AND lease_expires_at IS NOT NULL;
DROP INDEX executions_running;
CREATE INDEX executions_running ON executions (task_id)
    WHERE is_limited = 1 AND status = 'running' AND lease_expires_at IS NOT NULL;
-- Rate limits: a claim of a task with rate_limit records each start it makes here, counts the
-- task's starts in the period from here, and drops those older than a day (the longest period).
-- A row per start: a retry within the period counts again. The starts of the last day before
-- this migration are kept (the day before the latest start, whatever clock wrote them).
CREATE TABLE execution_starts (
    task_id TEXT NOT NULL,
    started_at REAL NOT NULL,
    execution_id TEXT NOT NULL,
    lease_token INTEGER NOT NULL,
    PRIMARY KEY (task_id, started_at, execution_id, lease_token)
) WITHOUT ROWID;
INSERT INTO execution_starts (task_id, started_at, execution_id, lease_token)
    SELECT task_id, started_at, execution_id, lease_token FROM executions
    WHERE started_at >= (SELECT max(started_at) FROM executions) - 86400;
DROP INDEX executions_started;
-- Listing every execution newest first merges one range of executions_status per status (the
-- storage reads them in order, a few rows each), so no index of its own is needed.
DROP INDEX executions_created_at;
