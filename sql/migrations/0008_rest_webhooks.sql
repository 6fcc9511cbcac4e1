-- 0008_rest_webhooks: the declarative REST source's raw tables, and incoming webhooks.
--
-- rest_raw_tables: every per-stream table the REST source created (rest_<integration id>_<stream>,
-- made on first use), so an operator can find them; their rows go with the integration
-- (ON DELETE CASCADE on each table), the tables themselves stay until dropped by hand.
--
-- webhook_secret: the secret Jira and GitHub webhooks of an integration must prove, sealed with
-- AES-GCM like `credentials` (an integration may name an environment variable instead).
--
-- webhook_events: what was received and accepted (signature verified), for the operator.
-- webhook_targets: the items events named, waiting for a targeted extraction. One pending row
-- per (integration, item): a burst of events for one item bumps `events` and `last_seen_at`,
-- and one run picks up every pending target of the integration once the burst is over.

CREATE TABLE rest_raw_tables (
    integration_id  bigint      NOT NULL REFERENCES integrations(id) ON DELETE CASCADE,
    stream          text        NOT NULL,
    tenant_id       bigint      NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    table_name      text        NOT NULL UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (integration_id, stream)
);
CREATE INDEX rest_raw_tables_tenant_id_idx ON rest_raw_tables (tenant_id);
COMMENT ON TABLE rest_raw_tables IS 'Per-stream raw tables created by the REST source.';

ALTER TABLE integrations ADD COLUMN webhook_secret bytea;

CREATE TABLE webhook_events (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id       bigint      NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    integration_id  bigint      NOT NULL REFERENCES integrations(id) ON DELETE CASCADE,
    provider        text        NOT NULL,
    event           text        NOT NULL,
    delivery_id     text,
    targets         jsonb       NOT NULL DEFAULT '[]',
    received_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_events_integration_id_received_at_idx
    ON webhook_events (integration_id, received_at DESC);
CREATE INDEX webhook_events_tenant_id_idx ON webhook_events (tenant_id);
COMMENT ON TABLE webhook_events IS 'Verified webhook deliveries and the items they named.';

CREATE TABLE webhook_targets (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id       bigint      NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    integration_id  bigint      NOT NULL REFERENCES integrations(id) ON DELETE CASCADE,
    target_key      text        NOT NULL,   -- issue:10001, pull_request:acme/api#12
    target          jsonb       NOT NULL,
    events          integer     NOT NULL DEFAULT 1,
    first_seen_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at    timestamptz NOT NULL DEFAULT now(),
    -- NULL while pending; set when a run took the target (or it was dropped: run_id NULL).
    dispatched_at   timestamptz,
    run_id          bigint      REFERENCES etl_job_runs(id) ON DELETE SET NULL,
    outcome         text        CHECK (outcome IN ('queued', 'dropped'))
);
CREATE UNIQUE INDEX webhook_targets_pending_key ON webhook_targets (integration_id, target_key)
    WHERE dispatched_at IS NULL;
CREATE INDEX webhook_targets_tenant_id_idx ON webhook_targets (tenant_id);
CREATE INDEX webhook_targets_run_id_idx ON webhook_targets (run_id);
CREATE INDEX webhook_targets_dispatched_at_idx ON webhook_targets (dispatched_at)
    WHERE dispatched_at IS NOT NULL;
COMMENT ON TABLE webhook_targets IS 'Items named by webhook events, pending until one targeted run fetches them.';
