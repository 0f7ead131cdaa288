-- Options a client enqueued without knowing (ExecutionRecord.deferred_options): NULL when none,
-- else their names, sorted, joined by commas ("retry,timeout").
ALTER TABLE executions ADD COLUMN deferred_options TEXT;
