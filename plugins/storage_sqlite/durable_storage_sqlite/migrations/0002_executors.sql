-- the executors' heartbeats (renew_leases), listed by `durable workers`
CREATE TABLE executors (
    executor_id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started_at REAL NOT NULL,
    heartbeat_at REAL NOT NULL,
    running INTEGER NOT NULL
);
CREATE INDEX executors_heartbeat_at ON executors (heartbeat_at);
