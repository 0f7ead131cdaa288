-- The whole schema, equal to every migration in migrations/ applied in order (a test checks it).
-- A new database is created from this file; an existing one is brought up to date by the migrations.

-- Executions, one row per ExecutionRecord. Small columns that change often come first and the
-- payloads last, so that reading or updating the hot columns never walks a payload's overflow pages.
CREATE TABLE executions (
    execution_id TEXT PRIMARY KEY,
    task_id TEXT NOT NULL,
    status TEXT NOT NULL,
    ready_at REAL,
    lease_token INTEGER NOT NULL,
    lease_expires_at REAL,
    executor_id TEXT,
    active_children_count INTEGER NOT NULL,
    retry_attempts INTEGER NOT NULL,
    lease_expirations INTEGER NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    start_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    waiting_for_children_started_at REAL,
    waiting_for_finalize_started_at REAL,
    timeout REAL NOT NULL,
    sleep_before_run REAL NOT NULL,
    retry_max_attempts INTEGER NOT NULL,
    retry_base_delay REAL NOT NULL,
    retry_delay_multiplier REAL NOT NULL,
    retry_max_delay REAL,
    root_task_id TEXT,
    root_execution_id TEXT,
    parent_task_id TEXT,
    parent_execution_id TEXT,
    index_in_parent_children INTEGER,
    is_finalize_of_parent INTEGER,
    finalize_task_id TEXT,
    finalize_execution_id TEXT,
    is_sleeping INTEGER NOT NULL,
    sleeping_unique_id TEXT,
    idempotency_key TEXT,
    error_type TEXT,
    error_message TEXT,
    error_is_retryable INTEGER,
    error_is_internal INTEGER,
    -- children as JSON runs of one task: [[task_id, execution_id, ...], ...]
    children TEXT,
    input_serializer TEXT NOT NULL,
    input BLOB NOT NULL,
    run_output_serializer TEXT,
    run_output BLOB,
    output_serializer TEXT,
    output BLOB
);

-- claim: earliest ready_at first
CREATE INDEX executions_ready_at ON executions (ready_at) WHERE ready_at IS NOT NULL;
-- lease expiry: earliest lease_expires_at first
CREATE INDEX executions_lease_expires_at ON executions (lease_expires_at)
    WHERE lease_expires_at IS NOT NULL;
-- closure and cascading cancellation walk the tree downwards
CREATE INDEX executions_parent ON executions (parent_execution_id)
    WHERE parent_execution_id IS NOT NULL;
CREATE UNIQUE INDEX executions_sleeping_unique_id ON executions (sleeping_unique_id)
    WHERE sleeping_unique_id IS NOT NULL;
CREATE UNIQUE INDEX executions_idempotency ON executions (task_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- listing, newest first, optionally by status or by task
CREATE INDEX executions_created_at ON executions (created_at);
CREATE INDEX executions_status ON executions (status, created_at);
CREATE INDEX executions_task ON executions (task_id, created_at);
-- retention: finished top-level executions, oldest first
CREATE INDEX executions_finished_roots ON executions (finished_at)
    WHERE parent_execution_id IS NULL AND finished_at IS NOT NULL;
