-- The executors' heartbeats (renew_leases), listed by `durable workers`. Times as in executions.
CREATE TABLE executors (
    executor_id text PRIMARY KEY,
    host text NOT NULL,
    pid integer NOT NULL,
    started_at double precision NOT NULL,
    heartbeat_at double precision NOT NULL,
    running integer NOT NULL
);
CREATE INDEX executors_heartbeat_at ON executors (heartbeat_at);
