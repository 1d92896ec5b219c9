-- The admin audit log: one row per admin, auditor or indexer call, allowed or refused.
-- Hash-chained: each row's hash is sha256(previous row's hash || the row's canonical content),
-- so a row changed or removed with SQL breaks the chain at that point (`memwarden audit verify`).
CREATE TABLE audit_log (
    id            bigserial PRIMARY KEY,
    at            timestamptz NOT NULL,
    caller        text        NOT NULL,
    role          text,
    method        text        NOT NULL,
    path          text        NOT NULL,
    status        int         NOT NULL,
    client_ip     text,
    justification text,
    prev_hash     text        NOT NULL,
    hash          text        NOT NULL
);
