-- list_executions orders by (created_at, execution_id) and pages by a cursor on both (STORAGE_API
-- 4): each listing index ends with them, so every page, the first and any later one, is read in
-- index order without a sort. seq no longer orders anything but stays: dropping it would rewrite
-- the table. Ids compare byte by byte (COLLATE "C"), as everywhere else, whatever the database's
-- collation.
DROP INDEX executions_created_at;
DROP INDEX executions_status;
DROP INDEX executions_task;
CREATE INDEX executions_created_at ON executions (created_at, execution_id COLLATE "C");
CREATE INDEX executions_status ON executions (status, created_at, execution_id COLLATE "C");
CREATE INDEX executions_task ON executions (task_id, created_at, execution_id COLLATE "C");
