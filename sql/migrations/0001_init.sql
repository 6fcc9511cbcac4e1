-- 0001_init: initial etld schema.
--
-- Conventions
--   * Surrogate ids are bigint identity columns; ids never repeat across tenants, so an index on a
--     foreign-key id alone is as selective as one prefixed by tenant_id.
--   * Every business row carries tenant_id; rows that come from a source also carry integration_id.
--     Source entities are unique on (tenant_id, integration_id, external_id), the key bulk upserts
--     use in ON CONFLICT.
--   * Every foreign-key column has an index whose leading column is that column, so cascading deletes
--     of a tenant or an integration never scan a large table once per deleted parent row. The one
--     exception is custom_fields_mapping (one row per integration; a scan is cheaper than 23 indexes).
--   * No triggers: updated_at / last_updated_at are set by the statements that write the row.
--   * All timestamps are timestamptz.
--
-- The migrator wraps this file in a transaction and owns schema_migrations.

-- ---------------------------------------------------------------------------------------------------
-- Tenants, people and access
-- ---------------------------------------------------------------------------------------------------

CREATE TABLE tenants (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text        NOT NULL UNIQUE,
    -- Selects the queue tier (extraction_queue_{tier} ...). Tiers are configuration, so no CHECK.
    tier        text        NOT NULL DEFAULT 'free',
    active      boolean     NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE tenants IS 'Customer organisations; every business row belongs to exactly one tenant.';

CREATE TABLE users (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id      bigint      NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    -- Login names are global (login happens before the tenant is known) and compared
    -- case-insensitively; uniqueness is enforced by users_username_lower_key below.
    username       text        NOT NULL,
    display_name   text,
    password_hash  text        NOT NULL,
    role           text        NOT NULL CHECK (role IN ('admin', 'viewer')),
    active         boolean     NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now(),
    last_login_at  timestamptz
);
CREATE UNIQUE INDEX users_username_lower_key ON users (lower(username));
CREATE INDEX users_tenant_id_idx ON users (tenant_id);
COMMENT ON TABLE users IS 'Web UI accounts; login names are unique across all tenants, ignoring case.';

CREATE TABLE api_tokens (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id     bigint      NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name          text        NOT NULL,
    -- Only a hash is stored; the plain token is shown once at creation.
    token_hash    text        NOT NULL UNIQUE,
    role          text        NOT NULL CHECK (role IN ('admin', 'viewer')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz
);
CREATE INDEX api_tokens_tenant_id_idx ON api_tokens (tenant_id);
COMMENT ON TABLE api_tokens IS 'Bearer tokens for the REST API, stored as hashes; revoked tokens are kept for audit.';

CREATE TABLE integrations (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id              bigint      NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name                   text        NOT NULL,
    -- No CHECK: sources are plug-ins, so the set of providers is open.
    provider               text        NOT NULL,
    base_url               text,
    username               text,
    credentials            bytea,      -- AES-GCM ciphertext (nonce included); NULL when none
    credentials_hint       text,       -- last 4 characters of the secret, for display only
    settings               jsonb       NOT NULL DEFAULT '{}',
    -- Off by default so a tenant cannot point the daemon at internal addresses (SSRF).
    allow_private_network  boolean     NOT NULL DEFAULT false,
    active                 boolean     NOT NULL DEFAULT true,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name)
);
COMMENT ON TABLE integrations IS 'Configured connections to a source (Jira, GitHub, custom REST) with encrypted credentials.';

-- ---------------------------------------------------------------------------------------------------
-- Jobs and runs
-- ---------------------------------------------------------------------------------------------------

CREATE TABLE etl_jobs (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id       bigint      NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    integration_id  bigint      NOT NULL REFERENCES integrations(id) ON DELETE CASCADE,
    name            text        NOT NULL,
    job_type        text        NOT NULL,
    status          jsonb       NOT NULL DEFAULT '{"overall": "NOT_STARTED", "steps": {}}',
    active          boolean     NOT NULL DEFAULT true,
    next_run        timestamptz,
    -- Start time of the last successful run; incremental syncs ask the source for changes since then.
    last_sync_date  timestamptz,
    job_order       integer     NOT NULL DEFAULT 0,
    settings        jsonb       NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name),
    -- IS NOT NULL as well: a status without "overall" (or not an object) would otherwise pass.
    CONSTRAINT etl_jobs_status_overall_check CHECK (
        status ->> 'overall' IS NOT NULL
        AND status ->> 'overall' IN ('NOT_STARTED', 'READY', 'RUNNING', 'FINISHED', 'FAILED')
    )
);
CREATE INDEX etl_jobs_tenant_id_job_order_idx ON etl_jobs (tenant_id, job_order);
CREATE INDEX etl_jobs_integration_id_idx ON etl_jobs (integration_id);
-- Scheduler tick: active jobs that are due.
CREATE INDEX etl_jobs_due_idx ON etl_jobs (next_run) WHERE active;
COMMENT ON TABLE etl_jobs IS 'Scheduled sync jobs per integration, with their live step-by-step status JSON.';

CREATE TABLE etl_job_runs (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id          bigint      NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    job_id             bigint      NOT NULL REFERENCES etl_jobs(id) ON DELETE CASCADE,
    trigger            text        NOT NULL DEFAULT 'schedule'
                       CHECK (trigger IN ('schedule', 'manual', 'retransform', 'webhook', 'watchdog')),
    full_sync          boolean     NOT NULL DEFAULT false,
    outcome            text        NOT NULL DEFAULT 'RUNNING'
                       CHECK (outcome IN ('RUNNING', 'FINISHED', 'FAILED', 'SKIPPED')),
    started_at         timestamptz NOT NULL DEFAULT now(),
    finished_at        timestamptz,
    last_progress_at   timestamptz,   -- the watchdog flags RUNNING runs whose progress went stale
    error              text,
    alert              text,
    records            jsonb       NOT NULL DEFAULT '{}',   -- records handled per stage
    api_calls          integer     NOT NULL DEFAULT 0,
    dead_letters       integer     NOT NULL DEFAULT 0,
    errors             integer     NOT NULL DEFAULT 0,
    peak_memory_bytes  bigint,
    checkpoint         jsonb       NOT NULL DEFAULT '{}'    -- extraction cursors, so a run can resume
);
CREATE INDEX etl_job_runs_job_id_started_at_idx ON etl_job_runs (job_id, started_at DESC);
CREATE INDEX etl_job_runs_tenant_id_started_at_idx ON etl_job_runs (tenant_id, started_at DESC);
-- At most one run in progress per job; also serves the watchdog's scan of running runs.
CREATE UNIQUE INDEX etl_job_runs_one_running_per_job_key ON etl_job_runs (job_id)
    WHERE outcome = 'RUNNING';
COMMENT ON TABLE etl_job_runs IS 'One row per execution of a job: trigger, outcome, counters and resume checkpoint.';

CREATE TABLE raw_extraction_data (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id       bigint      NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    integration_id  bigint      NOT NULL REFERENCES integrations(id) ON DELETE CASCADE,
    -- SET NULL: raw pages outlive job and run history so they can still be re-transformed.
    job_id          bigint      REFERENCES etl_jobs(id) ON DELETE SET NULL,
    run_id          bigint      REFERENCES etl_job_runs(id) ON DELETE SET NULL,
    type            text        NOT NULL,
    raw_payload     jsonb       NOT NULL,   -- the API response exactly as received
    status          text        NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'processed', 'failed')),
    error           text,
    payload_size    integer     NOT NULL DEFAULT 0,   -- bytes
    item_count      integer,
    page_key        text,                             -- idempotency key of the page within its run
    created_at      timestamptz NOT NULL DEFAULT now(),
    processed_at    timestamptz,
    -- A redelivered extraction message stores the same page again; this makes that a no-op.
    -- NULLs stay distinct on purpose: rows without a page_key, or whose run was deleted, never clash.
    -- Its leading run_id column also serves lookups by run and the run foreign key.
    UNIQUE (run_id, type, page_key)
);
CREATE INDEX raw_extraction_data_tenant_id_type_idx ON raw_extraction_data (tenant_id, type);
CREATE INDEX raw_extraction_data_integration_id_idx ON raw_extraction_data (integration_id);
CREATE INDEX raw_extraction_data_job_id_idx ON raw_extraction_data (job_id);
-- Pages still waiting for the transform stage (a small subset of the table).
CREATE INDEX raw_extraction_data_pending_idx ON raw_extraction_data (tenant_id, created_at)
    WHERE status = 'pending';
COMMENT ON TABLE raw_extraction_data IS 'Verbatim API pages from the extraction stage; the transform stage reads them by id.';

-- ---------------------------------------------------------------------------------------------------
-- Jira: projects, work item types, statuses
-- ---------------------------------------------------------------------------------------------------

CREATE TABLE projects (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id       bigint      NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    integration_id  bigint      NOT NULL REFERENCES integrations(id) ON DELETE CASCADE,
    external_id     text        NOT NULL,
    -- Not unique: Jira lets a key move to another project; external_id is the identity.
    key             text        NOT NULL,
    name            text,
    project_type    text,
    lead            text,
    active          boolean     NOT NULL DEFAULT true,
    raw_updated_at  timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, integration_id, external_id)
);
-- Leading integration_id serves the foreign key; key serves lookups of a project by its key.
CREATE INDEX projects_integration_id_key_idx ON projects (integration_id, key);
COMMENT ON TABLE projects IS 'Jira projects (and equivalent containers of other sources).';

CREATE TABLE wits (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id        bigint      NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    integration_id   bigint      NOT NULL REFERENCES integrations(id) ON DELETE CASCADE,
    external_id      text        NOT NULL,
    name             text        NOT NULL,
    description      text,
    hierarchy_level  integer,
    subtask          boolean     NOT NULL DEFAULT false,
    icon_url         text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, integration_id, external_id)
);
CREATE INDEX wits_integration_id_idx ON wits (integration_id);
COMMENT ON TABLE wits IS 'Work item types (Jira issue types such as Story, Bug, Sub-task).';

CREATE TABLE projects_wits (
    tenant_id   bigint NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    project_id  bigint NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    wit_id      bigint NOT NULL REFERENCES wits(id) ON DELETE CASCADE,
    PRIMARY KEY (project_id, wit_id)
);
CREATE INDEX projects_wits_wit_id_idx ON projects_wits (wit_id);
CREATE INDEX projects_wits_tenant_id_idx ON projects_wits (tenant_id);
COMMENT ON TABLE projects_wits IS 'Which work item types each project uses.';

CREATE TABLE statuses (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id       bigint      NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    integration_id  bigint      NOT NULL REFERENCES integrations(id) ON DELETE CASCADE,
    external_id     text        NOT NULL,
    name            text        NOT NULL,
    -- Jira status category key; NULL when the source has no such notion.
    category        text        CHECK (category IN ('new', 'indeterminate', 'done', 'undefined')),
    description     text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, integration_id, external_id)
);
CREATE INDEX statuses_integration_id_idx ON statuses (integration_id);
COMMENT ON TABLE statuses IS 'Workflow statuses of the source (Jira statuses with their category).';

CREATE TABLE projects_statuses (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   bigint NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    project_id  bigint NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    status_id   bigint NOT NULL REFERENCES statuses(id) ON DELETE CASCADE,
    wit_id      bigint REFERENCES wits(id) ON DELETE CASCADE,   -- NULL: applies to the whole project
    -- NULLS NOT DISTINCT so a project-wide row (wit_id NULL) cannot be stored twice.
    CONSTRAINT projects_statuses_project_status_wit_key
        UNIQUE NULLS NOT DISTINCT (project_id, status_id, wit_id)
);
CREATE INDEX projects_statuses_status_id_idx ON projects_statuses (status_id);
CREATE INDEX projects_statuses_wit_id_idx ON projects_statuses (wit_id);
CREATE INDEX projects_statuses_tenant_id_idx ON projects_statuses (tenant_id);
COMMENT ON TABLE projects_statuses IS 'Which statuses each project (optionally per work item type) uses.';

CREATE TABLE status_mappings (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id       bigint      NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    integration_id  bigint      NOT NULL REFERENCES integrations(id) ON DELETE CASCADE,
    status_id       bigint      NOT NULL REFERENCES statuses(id) ON DELETE CASCADE,
    flow_category   text        NOT NULL
                    CHECK (flow_category IN ('backlog', 'todo', 'in_progress', 'review', 'done')),
    -- 'default' rows are derived from the Jira category and may be refreshed by a sync;
    -- 'user' rows were set by a person and are never overwritten automatically.
    source          text        NOT NULL DEFAULT 'default' CHECK (source IN ('default', 'user')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, status_id)
);
CREATE INDEX status_mappings_status_id_idx ON status_mappings (status_id);
CREATE INDEX status_mappings_integration_id_idx ON status_mappings (integration_id);
COMMENT ON TABLE status_mappings IS 'Maps each source status to a flow category used by the workflow metrics.';

-- ---------------------------------------------------------------------------------------------------
-- Custom fields
-- ---------------------------------------------------------------------------------------------------

CREATE TABLE custom_fields (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id        bigint       NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    integration_id   bigint       NOT NULL REFERENCES integrations(id) ON DELETE CASCADE,
    external_id      varchar(100) NOT NULL,   -- e.g. customfield_10001
    name             varchar(255) NOT NULL,
    field_type       varchar(100) NOT NULL,   -- schema type: string, number, option, array, team ...
    schema           jsonb        NOT NULL DEFAULT '{}',
    operations       jsonb        NOT NULL DEFAULT '[]',
    active           boolean      NOT NULL DEFAULT true,
    created_at       timestamptz  NOT NULL DEFAULT now(),
    last_updated_at  timestamptz  NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, integration_id, external_id)
);
CREATE INDEX custom_fields_integration_id_idx ON custom_fields (integration_id);
COMMENT ON TABLE custom_fields IS 'Custom fields discovered on the source (manual custom-fields sync).';

-- The *_field_id columns are deliberately not indexed: the table holds one row per integration.
CREATE TABLE custom_fields_mapping (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id              bigint      NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    integration_id         bigint      NOT NULL REFERENCES integrations(id) ON DELETE CASCADE,
    team_field_id          bigint REFERENCES custom_fields(id) ON DELETE SET NULL,
    code_changed_field_id  bigint REFERENCES custom_fields(id) ON DELETE SET NULL,
    story_points_field_id  bigint REFERENCES custom_fields(id) ON DELETE SET NULL,
    custom_field_01_id     bigint REFERENCES custom_fields(id) ON DELETE SET NULL,
    custom_field_02_id     bigint REFERENCES custom_fields(id) ON DELETE SET NULL,
    custom_field_03_id     bigint REFERENCES custom_fields(id) ON DELETE SET NULL,
    custom_field_04_id     bigint REFERENCES custom_fields(id) ON DELETE SET NULL,
    custom_field_05_id     bigint REFERENCES custom_fields(id) ON DELETE SET NULL,
    custom_field_06_id     bigint REFERENCES custom_fields(id) ON DELETE SET NULL,
    custom_field_07_id     bigint REFERENCES custom_fields(id) ON DELETE SET NULL,
    custom_field_08_id     bigint REFERENCES custom_fields(id) ON DELETE SET NULL,
    custom_field_09_id     bigint REFERENCES custom_fields(id) ON DELETE SET NULL,
    custom_field_10_id     bigint REFERENCES custom_fields(id) ON DELETE SET NULL,
    custom_field_11_id     bigint REFERENCES custom_fields(id) ON DELETE SET NULL,
    custom_field_12_id     bigint REFERENCES custom_fields(id) ON DELETE SET NULL,
    custom_field_13_id     bigint REFERENCES custom_fields(id) ON DELETE SET NULL,
    custom_field_14_id     bigint REFERENCES custom_fields(id) ON DELETE SET NULL,
    custom_field_15_id     bigint REFERENCES custom_fields(id) ON DELETE SET NULL,
    custom_field_16_id     bigint REFERENCES custom_fields(id) ON DELETE SET NULL,
    custom_field_17_id     bigint REFERENCES custom_fields(id) ON DELETE SET NULL,
    custom_field_18_id     bigint REFERENCES custom_fields(id) ON DELETE SET NULL,
    custom_field_19_id     bigint REFERENCES custom_fields(id) ON DELETE SET NULL,
    custom_field_20_id     bigint REFERENCES custom_fields(id) ON DELETE SET NULL,
    active                 boolean     NOT NULL DEFAULT true,
    created_at             timestamptz NOT NULL DEFAULT now(),
    last_updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, integration_id)
);
CREATE INDEX custom_fields_mapping_integration_id_idx ON custom_fields_mapping (integration_id);
COMMENT ON TABLE custom_fields_mapping IS 'Per integration: which custom field fills team, story points, code changed and custom_field_01..20.';

-- ---------------------------------------------------------------------------------------------------
-- Work items and their status history
-- ---------------------------------------------------------------------------------------------------

CREATE TABLE work_items (
    id                         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id                  bigint      NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    integration_id             bigint      NOT NULL REFERENCES integrations(id) ON DELETE CASCADE,
    external_id                text        NOT NULL,   -- Jira numeric issue id, as text
    key                        text        NOT NULL,   -- e.g. PROJ-123; changes when an issue moves
    project_id                 bigint      REFERENCES projects(id) ON DELETE SET NULL,
    wit_id                     bigint      REFERENCES wits(id) ON DELETE SET NULL,
    status_id                  bigint      REFERENCES statuses(id) ON DELETE SET NULL,
    summary                    text,
    description                text,                   -- plain text (rich text flattened)
    priority                   text,
    assignee                   text,
    assignee_account_id        text,
    reporter                   text,
    labels                     text[]      NOT NULL DEFAULT '{}',
    parent_key                 text,
    resolution                 text,
    created                    timestamptz,            -- source timestamps
    updated                    timestamptz,
    resolved                   timestamptz,
    due_date                   date,
    -- Special mapped fields (see custom_fields_mapping)
    team                       text,
    story_points               double precision,
    code_changed               boolean,
    -- Mapped custom fields; column names are a fixed allow-list in code.
    custom_field_01            text,
    custom_field_02            text,
    custom_field_03            text,
    custom_field_04            text,
    custom_field_05            text,
    custom_field_06            text,
    custom_field_07            text,
    custom_field_08            text,
    custom_field_09            text,
    custom_field_10            text,
    custom_field_11            text,
    custom_field_12            text,
    custom_field_13            text,
    custom_field_14            text,
    custom_field_15            text,
    custom_field_16            text,
    custom_field_17            text,
    custom_field_18            text,
    custom_field_19            text,
    custom_field_20            text,
    custom_fields_overflow     jsonb       NOT NULL DEFAULT '{}',   -- mapped fields beyond the 20 columns
    -- Workflow metrics, computed from the changelog by the transform stage
    work_first_committed_at    timestamptz,
    work_first_started_at      timestamptz,
    work_last_started_at       timestamptz,
    work_first_completed_at    timestamptz,
    work_last_completed_at     timestamptz,
    total_work_starts          integer          NOT NULL DEFAULT 0,
    total_completions          integer          NOT NULL DEFAULT 0,
    total_backlog_returns      integer          NOT NULL DEFAULT 0,
    total_work_time_seconds    double precision NOT NULL DEFAULT 0,
    total_review_time_seconds  double precision NOT NULL DEFAULT 0,
    total_cycle_time_seconds   double precision,   -- NULL until the item has started and completed
    total_lead_time_seconds    double precision,   -- NULL until the item has been committed and completed
    workflow_complexity_score  integer          NOT NULL DEFAULT 0,
    rework_indicator           boolean          NOT NULL DEFAULT false,
    direct_completion          boolean          NOT NULL DEFAULT false,
    -- The source's `updated` of the stored version: an upsert only applies a page whose value is
    -- not older, so a late or replayed page never overwrites newer data.
    source_updated_at          timestamptz,
    deleted_at                 timestamptz,        -- soft delete: the item vanished from the source
    created_at                 timestamptz NOT NULL DEFAULT now(),
    last_updated_at            timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, integration_id, external_id)
);
CREATE INDEX work_items_tenant_id_key_idx ON work_items (tenant_id, key);
-- project_id / status_id / wit_id alone (not prefixed by tenant_id): ids are global, so these serve
-- tenant-scoped filters equally well and also the ON DELETE SET NULL actions, which filter on the
-- id only and would otherwise scan work_items once per deleted project or status.
CREATE INDEX work_items_project_id_idx ON work_items (project_id);
CREATE INDEX work_items_status_id_idx ON work_items (status_id);
CREATE INDEX work_items_wit_id_idx ON work_items (wit_id);
CREATE INDEX work_items_tenant_id_updated_idx ON work_items (tenant_id, updated);
CREATE INDEX work_items_integration_id_idx ON work_items (integration_id);
CREATE INDEX work_items_custom_fields_overflow_idx ON work_items
    USING gin (custom_fields_overflow jsonb_path_ops);
COMMENT ON TABLE work_items IS 'Issues from the source with mapped custom fields and computed workflow metrics.';

CREATE TABLE changelogs (
    id                      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id               bigint           NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    integration_id          bigint           NOT NULL REFERENCES integrations(id) ON DELETE CASCADE,
    work_item_id            bigint           NOT NULL REFERENCES work_items(id) ON DELETE CASCADE,
    external_id             text             NOT NULL,   -- Jira changelog history id
    from_status_id          bigint           REFERENCES statuses(id) ON DELETE SET NULL,
    to_status_id            bigint           REFERENCES statuses(id) ON DELETE SET NULL,
    transition_start_date   timestamptz      NOT NULL,   -- when the item entered from_status
    transition_change_date  timestamptz      NOT NULL,   -- when it moved to to_status
    time_in_status_seconds  double precision NOT NULL,
    author                  text,
    created_at              timestamptz      NOT NULL DEFAULT now(),
    UNIQUE (work_item_id, external_id)
);
CREATE INDEX changelogs_tenant_id_work_item_id_idx ON changelogs (tenant_id, work_item_id);
CREATE INDEX changelogs_integration_id_idx ON changelogs (integration_id);
CREATE INDEX changelogs_from_status_id_idx ON changelogs (from_status_id);
CREATE INDEX changelogs_to_status_id_idx ON changelogs (to_status_id);
COMMENT ON TABLE changelogs IS 'Status transitions of work items, with time spent in the previous status.';

-- ---------------------------------------------------------------------------------------------------
-- GitHub: repositories and pull requests
-- ---------------------------------------------------------------------------------------------------

CREATE TABLE repositories (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id       bigint      NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    integration_id  bigint      NOT NULL REFERENCES integrations(id) ON DELETE CASCADE,
    external_id     text        NOT NULL,   -- GitHub numeric repository id, as text (survives renames)
    full_name       text        NOT NULL,   -- owner/name
    owner           text,
    name            text,
    default_branch  text,
    private         boolean     NOT NULL DEFAULT false,
    archived        boolean     NOT NULL DEFAULT false,
    html_url        text,
    description     text,
    created         timestamptz,            -- source timestamps
    updated         timestamptz,
    pushed_at       timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, integration_id, external_id)
);
-- GitHub names are case-insensitive; links from Jira may spell them differently.
CREATE INDEX repositories_tenant_id_full_name_idx ON repositories (tenant_id, lower(full_name));
CREATE INDEX repositories_integration_id_idx ON repositories (integration_id);
COMMENT ON TABLE repositories IS 'GitHub repositories synced by an integration.';

CREATE TABLE pull_requests (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id              bigint      NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    integration_id         bigint      NOT NULL REFERENCES integrations(id) ON DELETE CASCADE,
    repository_id          bigint      NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    external_id            text        NOT NULL,
    number                 integer     NOT NULL,
    title                  text,
    body                   text,
    state                  text,
    draft                  boolean     NOT NULL DEFAULT false,
    merged                 boolean     NOT NULL DEFAULT false,
    author_login           text,
    head_ref               text,
    base_ref               text,
    head_sha               text,
    additions              integer,
    deletions              integer,
    changed_files          integer,
    commits_count          integer,
    comments_count         integer,
    review_comments_count  integer,
    created                timestamptz,   -- source timestamps
    updated                timestamptz,
    closed_at              timestamptz,
    merged_at              timestamptz,
    first_commit_at        timestamptz,
    first_review_at        timestamptz,
    -- Derived durations; NULL while the phase has not happened.
    coding_time_seconds    double precision,   -- first commit -> opened
    pickup_time_seconds    double precision,   -- opened -> first review
    review_time_seconds    double precision,   -- first review -> merged
    cycle_time_seconds     double precision,   -- first commit -> merged
    html_url               text,
    truncated              jsonb       NOT NULL DEFAULT '{}',   -- lists GitHub itself capped (commits, files ...)
    source_updated_at      timestamptz,   -- as on work_items: older pages never overwrite newer data
    deleted_at             timestamptz,
    created_at             timestamptz NOT NULL DEFAULT now(),
    last_updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, integration_id, external_id),
    UNIQUE (repository_id, number)
);
CREATE INDEX pull_requests_integration_id_idx ON pull_requests (integration_id);
COMMENT ON TABLE pull_requests IS 'GitHub pull requests with size, timing and derived cycle-time figures.';

CREATE TABLE pr_commits (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id        bigint      NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    pull_request_id  bigint      NOT NULL REFERENCES pull_requests(id) ON DELETE CASCADE,
    sha              text        NOT NULL,
    message          text,
    author_name      text,
    author_email     text,
    author_login     text,
    authored_at      timestamptz,
    committed_at     timestamptz,
    UNIQUE (pull_request_id, sha)
);
CREATE INDEX pr_commits_tenant_id_idx ON pr_commits (tenant_id);
COMMENT ON TABLE pr_commits IS 'Commits of each pull request.';

CREATE TABLE pr_reviews (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id        bigint      NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    pull_request_id  bigint      NOT NULL REFERENCES pull_requests(id) ON DELETE CASCADE,
    external_id      text        NOT NULL,
    author_login     text,
    state            text,       -- APPROVED, CHANGES_REQUESTED, COMMENTED, DISMISSED ...
    body             text,
    submitted_at     timestamptz,
    UNIQUE (pull_request_id, external_id)
);
CREATE INDEX pr_reviews_tenant_id_idx ON pr_reviews (tenant_id);
COMMENT ON TABLE pr_reviews IS 'Reviews submitted on each pull request.';

CREATE TABLE pr_comments (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id        bigint      NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    pull_request_id  bigint      NOT NULL REFERENCES pull_requests(id) ON DELETE CASCADE,
    external_id      text        NOT NULL,
    -- GitHub numbers review (code) comments and issue (conversation) comments separately.
    kind             text        NOT NULL CHECK (kind IN ('review', 'issue')),
    author_login     text,
    body             text,
    path             text,       -- file path, review comments only
    created          timestamptz,
    updated          timestamptz,
    UNIQUE (tenant_id, kind, external_id)
);
CREATE INDEX pr_comments_pull_request_id_idx ON pr_comments (pull_request_id);
COMMENT ON TABLE pr_comments IS 'Review and conversation comments on pull requests.';

CREATE TABLE work_items_prs_links (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id             bigint      NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    work_item_id          bigint      NOT NULL REFERENCES work_items(id) ON DELETE CASCADE,
    -- NULL while the pull request has not been synced; resolved later by repository name and number.
    pull_request_id       bigint      REFERENCES pull_requests(id) ON DELETE SET NULL,
    repository_full_name  text        NOT NULL,
    pr_number             integer     NOT NULL,
    pr_url                text,
    link_source           text        NOT NULL
                          CHECK (link_source IN ('dev_status', 'title', 'body', 'branch', 'commit')),
    created_at            timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, work_item_id, repository_full_name, pr_number, link_source)
);
CREATE INDEX work_items_prs_links_work_item_id_idx ON work_items_prs_links (work_item_id);
CREATE INDEX work_items_prs_links_pull_request_id_idx ON work_items_prs_links (pull_request_id);
-- Resolving links to a newly synced pull request (matches repositories' case-insensitive index).
CREATE INDEX work_items_prs_links_repo_pr_idx
    ON work_items_prs_links (tenant_id, lower(repository_full_name), pr_number);
COMMENT ON TABLE work_items_prs_links IS 'Links between work items and pull requests, with how each link was found.';

-- ---------------------------------------------------------------------------------------------------
-- Vectors, failures, notifications
-- ---------------------------------------------------------------------------------------------------

CREATE TABLE qdrant_vectors (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id        bigint      NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    -- (table_name, record_id) is a polymorphic reference, so it has no foreign key; rows of deleted
    -- records are removed together with their Qdrant points.
    table_name       text        NOT NULL,
    record_id        bigint      NOT NULL,
    external_id      text,
    source_type      text        NOT NULL,   -- JIRA, GITHUB or a custom source name
    collection_name  text        NOT NULL,
    point_id         uuid        NOT NULL,
    model            text        NOT NULL,
    variant          text        NOT NULL,
    -- Hash of the embedded text: an unchanged text is not embedded again.
    text_hash        text        NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, table_name, record_id),
    UNIQUE (collection_name, point_id)
);
COMMENT ON TABLE qdrant_vectors IS 'Bridge from PostgreSQL records to their Qdrant points and embedding model.';

CREATE TABLE dead_letters (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Nullable: a malformed message may name no tenant.
    tenant_id      bigint      REFERENCES tenants(id) ON DELETE CASCADE,
    -- No foreign keys: the job or run may be gone, the dead letter must stay.
    job_id         bigint,
    run_id         bigint,
    queue          text        NOT NULL,
    routing_key    text,
    stage          text,
    message_type   text,
    reason         text        NOT NULL,
    error          text,
    traceback      text,
    attempts       integer     NOT NULL DEFAULT 0,
    headers        jsonb       NOT NULL DEFAULT '{}',
    body           bytea       NOT NULL,   -- original bytes, so even invalid JSON is preserved
    status         text        NOT NULL DEFAULT 'dead' CHECK (status IN ('dead', 'requeued', 'purged')),
    requeue_count  integer     NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL DEFAULT now(),
    requeued_at    timestamptz
);
CREATE INDEX dead_letters_tenant_id_created_at_idx ON dead_letters (tenant_id, created_at DESC);
CREATE INDEX dead_letters_status_queue_idx ON dead_letters (status, queue);
COMMENT ON TABLE dead_letters IS 'Messages that exhausted their retries, kept verbatim for inspection and requeue.';

CREATE TABLE notifications (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id          bigint      NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    job_id             bigint      REFERENCES etl_jobs(id) ON DELETE SET NULL,
    run_id             bigint      REFERENCES etl_job_runs(id) ON DELETE SET NULL,
    kind               text        NOT NULL,   -- run_failed, job_skipped, run_stuck ... (open set)
    severity           text        NOT NULL DEFAULT 'warning'
                       CHECK (severity IN ('info', 'warning', 'error')),
    message            text        NOT NULL,
    details            jsonb       NOT NULL DEFAULT '{}',
    created_at         timestamptz NOT NULL DEFAULT now(),
    read_at            timestamptz,
    delivered_at       timestamptz,
    delivery_attempts  integer     NOT NULL DEFAULT 0,
    delivery_error     text
);
CREATE INDEX notifications_tenant_id_created_at_idx ON notifications (tenant_id, created_at DESC);
CREATE INDEX notifications_job_id_idx ON notifications (job_id);
CREATE INDEX notifications_run_id_idx ON notifications (run_id);
COMMENT ON TABLE notifications IS 'Operational alerts for a tenant (failed, skipped or stuck runs) and their delivery state.';
