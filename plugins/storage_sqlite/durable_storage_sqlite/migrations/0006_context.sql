-- What plugins keep with an execution from the code that created it (ExecutionRecord.context, e.g.
-- the trace it belongs to): NULL when none, else a JSON object of strings, keys sorted.
ALTER TABLE executions ADD COLUMN context TEXT;
