-- Fewer indexes for every execution to update: a write that changes an indexed column (a claim,
-- a commit) adds an entry to every index whose predicate the row meets, and the server's CPU per
-- task is mostly that. Three served only rare needs; what replaces them costs nothing to
-- executions of tasks without a limit.
--
-- Concurrency limits: only the claims of tasks with max_concurrency or rate_limit set is_limited,
-- and only those rows enter the index the count reads. Every row running now is flagged: counting
-- too many for a moment is safe, too few is not. (A constant default: no table rewrite.)
ALTER TABLE executions ADD COLUMN is_limited boolean NOT NULL DEFAULT false;
UPDATE executions SET is_limited = true WHERE status = 'running' AND lease_expires_at IS NOT NULL;
DROP INDEX executions_running;
CREATE INDEX executions_running ON executions (task_id)
    WHERE is_limited AND status = 'running' AND lease_expires_at IS NOT NULL;
-- Rate limits: a claim of a task with rate_limit records each start it makes here, counts the
-- task's starts in the period from here, and drops those older than a day (the longest period).
-- A row per start: a retry within the period counts again. The starts of the last day before
-- this migration are kept (the day before the latest start, whatever clock wrote them).
CREATE TABLE execution_starts (
    task_id text NOT NULL,
    started_at double precision NOT NULL,
    execution_id text NOT NULL,
    lease_token bigint NOT NULL,
    PRIMARY KEY (task_id, started_at, execution_id, lease_token)
);
INSERT INTO execution_starts (task_id, started_at, execution_id, lease_token)
    SELECT task_id, started_at, execution_id, lease_token FROM executions
    WHERE started_at >= (SELECT max(started_at) FROM executions) - 86400;
DROP INDEX executions_started;
-- Listing every execution newest first merges one range of executions_status per status (each
-- read in index order, a page's rows at most), so no index of its own is needed.
DROP INDEX executions_created_at;
