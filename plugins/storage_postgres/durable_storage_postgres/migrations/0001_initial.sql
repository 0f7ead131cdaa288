-- Executions, one row per ExecutionRecord. Times are seconds since the epoch from the executor's
-- clock (double precision), never the server's. Small columns that change often come first.
CREATE TABLE executions (
    execution_id text PRIMARY KEY,
    -- insertion order: ties of created_at are listed newest first
    seq bigint GENERATED ALWAYS AS IDENTITY,
    task_id text NOT NULL,
    status text NOT NULL,
    ready_at double precision,
    lease_token bigint NOT NULL,
    lease_expires_at double precision,
    executor_id text,
    active_children_count integer NOT NULL,
    retry_attempts integer NOT NULL,
    lease_expirations integer NOT NULL,
    created_at double precision NOT NULL,
    updated_at double precision NOT NULL,
    start_at double precision NOT NULL,
    started_at double precision,
    finished_at double precision,
    waiting_for_children_started_at double precision,
    waiting_for_finalize_started_at double precision,
    timeout double precision NOT NULL,
    sleep_before_run double precision NOT NULL,
    retry_max_attempts integer NOT NULL,
    retry_base_delay double precision NOT NULL,
    retry_delay_multiplier double precision NOT NULL,
    retry_max_delay double precision,
    root_task_id text,
    root_execution_id text,
    parent_task_id text,
    parent_execution_id text,
    index_in_parent_children integer,
    is_finalize_of_parent boolean,
    finalize_task_id text,
    finalize_execution_id text,
    is_sleeping boolean NOT NULL,
    sleeping_unique_id text,
    idempotency_key text,
    error_type text,
    error_message text,
    error_is_retryable boolean,
    error_is_internal boolean,
    -- children as runs of one task: {task_id, execution_id, ..., '', task_id, ...}
    children text[],
    input_serializer text NOT NULL,
    input bytea NOT NULL,
    run_output_serializer text,
    run_output bytea,
    output_serializer text,
    output bytea
);

-- claim: earliest ready_at first
CREATE INDEX executions_ready_at ON executions (ready_at) WHERE ready_at IS NOT NULL;
-- lease expiry: earliest lease_expires_at first
CREATE INDEX executions_lease_expires_at ON executions (lease_expires_at) WHERE lease_expires_at IS NOT NULL;
-- closure and cascading cancellation walk the tree downwards
CREATE INDEX executions_parent ON executions (parent_execution_id) WHERE parent_execution_id IS NOT NULL;
CREATE UNIQUE INDEX executions_sleeping_unique_id ON executions (sleeping_unique_id)
    WHERE sleeping_unique_id IS NOT NULL;
CREATE UNIQUE INDEX executions_idempotency ON executions (task_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- listing, newest first, optionally by status or by task
CREATE INDEX executions_created_at ON executions (created_at, seq);
CREATE INDEX executions_status ON executions (status, created_at, seq);
CREATE INDEX executions_task ON executions (task_id, created_at, seq);
-- retention: finished top-level executions, oldest first
CREATE INDEX executions_finished_roots ON executions (finished_at)
    WHERE parent_execution_id IS NULL AND finished_at IS NOT NULL;
