-- Job runs you can trust: a ledger of every message a run produced, doubling as an outbox.
--
-- A run is FINISHED only when every item it created, in every stage, is done. Counting
-- flags in messages (last_job_item) cannot tell that when many consumers run at once or a
-- message is redelivered; a row per item, marked done at most once, can. The message body
-- is kept with the item so a crash between "item recorded" and "message published" is
-- repaired by republishing (the recovery sweep), never by losing the item.

CREATE TABLE etl_run_items (
    run_id        bigint      NOT NULL REFERENCES etl_job_runs(id) ON DELETE CASCADE,
    -- Deterministic key (parent key + child key): re-emitting after a crash is a no-op.
    item_key      text        NOT NULL,
    tenant_id     bigint      NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    step          text        NOT NULL,
    stage         text        NOT NULL CHECK (stage IN ('extraction', 'transform', 'embedding')),
    state         text        NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'done', 'failed', 'cancelled')),
    queue         text        NOT NULL,
    message       jsonb       NOT NULL,
    published_at  timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    done_at       timestamptz,
    error         text,
    PRIMARY KEY (run_id, item_key)
);
-- The recovery sweep looks for items recorded but never confirmed as published.
CREATE INDEX etl_run_items_unpublished_idx ON etl_run_items (created_at)
    WHERE state = 'pending' AND published_at IS NULL;
CREATE INDEX etl_run_items_tenant_id_idx ON etl_run_items (tenant_id);
COMMENT ON TABLE etl_run_items IS 'Every message a run produced (work ledger and outbox); a run finishes when none is pending.';

-- Counters per (run, step, stage), maintained in the same transaction as item state
-- changes, so completion checks read a handful of rows instead of counting items.
CREATE TABLE etl_run_stages (
    run_id     bigint  NOT NULL REFERENCES etl_job_runs(id) ON DELETE CASCADE,
    step       text    NOT NULL,
    stage      text    NOT NULL CHECK (stage IN ('extraction', 'transform', 'embedding')),
    created    integer NOT NULL DEFAULT 0,
    done       integer NOT NULL DEFAULT 0,
    failed     integer NOT NULL DEFAULT 0,
    records    bigint  NOT NULL DEFAULT 0,
    started_at timestamptz,
    PRIMARY KEY (run_id, step, stage)
);
COMMENT ON TABLE etl_run_stages IS 'Per run, step and stage: items created/done/failed and records handled.';

ALTER TABLE etl_job_runs
    -- The scheduler's claim on a tick: one run per (job, scheduled time), whoever ticks.
    ADD COLUMN scheduled_for     timestamptz,
    -- 1-based index of the newest step started; steps start in order.
    ADD COLUMN current_step      integer NOT NULL DEFAULT 0,
    ADD COLUMN steps             jsonb   NOT NULL DEFAULT '[]',
    ADD COLUMN watchdog_requeues integer NOT NULL DEFAULT 0,
    ADD COLUMN config            jsonb   NOT NULL DEFAULT '{}';
CREATE UNIQUE INDEX etl_job_runs_job_scheduled_for_key ON etl_job_runs (job_id, scheduled_for)
    WHERE scheduled_for IS NOT NULL;
