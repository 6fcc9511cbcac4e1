-- The declarative REST source: extraction checkpoints, stream cursors, and the idempotent loads
-- into work_items or a stream's raw table.
--
-- Raw table statements name their table as {table}: the source fills it in with an identifier
-- it built from the integration id and a validated stream name, checked against a strict
-- pattern and quoted; nothing else is ever formatted into these statements.

-- name: get_checkpoint
SELECT checkpoint -> $2::text FROM etl_job_runs WHERE id = $1;

-- name: put_checkpoint
UPDATE etl_job_runs
   SET checkpoint = jsonb_set(checkpoint, ARRAY[$2::text], $3::jsonb), last_progress_at = now()
 WHERE id = $1;

-- name: last_cursor
-- The stream's cursor as of the newest successful polling run of the job (a run advances it
-- only by finishing: a failed run is read again from the same cursor). Webhook and
-- re-transform runs never extract the stream, so they hold no checkpoint for it.
SELECT r.checkpoint -> $2::text AS state
  FROM etl_job_runs r
 WHERE r.job_id = $1 AND r.id <> $3 AND r.outcome = 'FINISHED'
   AND r.trigger NOT IN ('webhook', 'retransform')
   AND (r.checkpoint -> $2::text ->> 'done') = 'true'
 ORDER BY r.finished_at DESC, r.id DESC
 LIMIT 1;

-- name: upsert_statuses
-- Status names a mapped stream reports; the name is the external id.
INSERT INTO statuses (tenant_id, integration_id, external_id, name)
SELECT $1, $2, n, n FROM unnest($3::text[]) AS n
ON CONFLICT (tenant_id, integration_id, external_id) DO NOTHING;

-- name: upsert_wits
INSERT INTO wits (tenant_id, integration_id, external_id, name)
SELECT $1, $2, n, n FROM unnest($3::text[]) AS n
ON CONFLICT (tenant_id, integration_id, external_id) DO NOTHING;

-- name: upsert_work_items
-- $3: a JSON array of mapped rows. An older version never overwrites a newer one (by the
-- mapped `updated`), and a row whose content is unchanged is not rewritten; RETURNING lists
-- only the rows written.
INSERT INTO work_items AS w (
    tenant_id, integration_id, external_id, key, wit_id, status_id, summary, description,
    priority, assignee, assignee_account_id, reporter, labels, parent_key, resolution, created,
    updated, resolved, due_date, team, story_points, code_changed,
    custom_field_01, custom_field_02, custom_field_03, custom_field_04, custom_field_05,
    custom_field_06, custom_field_07, custom_field_08, custom_field_09, custom_field_10,
    custom_field_11, custom_field_12, custom_field_13, custom_field_14, custom_field_15,
    custom_field_16, custom_field_17, custom_field_18, custom_field_19, custom_field_20,
    source_updated_at, source_hash
)
SELECT
    $1, $2, r.external_id, r.key, t.id, s.id, r.summary, r.description, r.priority, r.assignee,
    r.assignee_account_id, r.reporter, COALESCE(r.labels, '{}'), r.parent_key, r.resolution,
    r.created, r.updated, r.resolved, r.due_date, r.team, r.story_points, r.code_changed,
    r.custom_field_01, r.custom_field_02, r.custom_field_03, r.custom_field_04,
    r.custom_field_05, r.custom_field_06, r.custom_field_07, r.custom_field_08,
    r.custom_field_09, r.custom_field_10, r.custom_field_11, r.custom_field_12,
    r.custom_field_13, r.custom_field_14, r.custom_field_15, r.custom_field_16,
    r.custom_field_17, r.custom_field_18, r.custom_field_19, r.custom_field_20,
    r.updated, r.source_hash
  FROM json_to_recordset($3::json) AS r (
       external_id text, key text, type text, status text, summary text, description text,
       priority text, assignee text, assignee_account_id text, reporter text, labels text[],
       parent_key text, resolution text, created timestamptz, updated timestamptz,
       resolved timestamptz, due_date date, team text, story_points double precision,
       code_changed boolean, custom_field_01 text, custom_field_02 text, custom_field_03 text,
       custom_field_04 text, custom_field_05 text, custom_field_06 text, custom_field_07 text,
       custom_field_08 text, custom_field_09 text, custom_field_10 text, custom_field_11 text,
       custom_field_12 text, custom_field_13 text, custom_field_14 text, custom_field_15 text,
       custom_field_16 text, custom_field_17 text, custom_field_18 text, custom_field_19 text,
       custom_field_20 text, source_hash text
       )
  LEFT JOIN wits t ON t.tenant_id = $1 AND t.integration_id = $2 AND t.external_id = r.type
  LEFT JOIN statuses s ON s.tenant_id = $1 AND s.integration_id = $2 AND s.external_id = r.status
ON CONFLICT (tenant_id, integration_id, external_id) DO UPDATE
   SET key = EXCLUDED.key,
       wit_id = EXCLUDED.wit_id,
       status_id = EXCLUDED.status_id,
       summary = EXCLUDED.summary,
       description = EXCLUDED.description,
       priority = EXCLUDED.priority,
       assignee = EXCLUDED.assignee,
       assignee_account_id = EXCLUDED.assignee_account_id,
       reporter = EXCLUDED.reporter,
       labels = EXCLUDED.labels,
       parent_key = EXCLUDED.parent_key,
       resolution = EXCLUDED.resolution,
       created = EXCLUDED.created,
       updated = EXCLUDED.updated,
       resolved = EXCLUDED.resolved,
       due_date = EXCLUDED.due_date,
       team = EXCLUDED.team,
       story_points = EXCLUDED.story_points,
       code_changed = EXCLUDED.code_changed,
       custom_field_01 = EXCLUDED.custom_field_01,
       custom_field_02 = EXCLUDED.custom_field_02,
       custom_field_03 = EXCLUDED.custom_field_03,
       custom_field_04 = EXCLUDED.custom_field_04,
       custom_field_05 = EXCLUDED.custom_field_05,
       custom_field_06 = EXCLUDED.custom_field_06,
       custom_field_07 = EXCLUDED.custom_field_07,
       custom_field_08 = EXCLUDED.custom_field_08,
       custom_field_09 = EXCLUDED.custom_field_09,
       custom_field_10 = EXCLUDED.custom_field_10,
       custom_field_11 = EXCLUDED.custom_field_11,
       custom_field_12 = EXCLUDED.custom_field_12,
       custom_field_13 = EXCLUDED.custom_field_13,
       custom_field_14 = EXCLUDED.custom_field_14,
       custom_field_15 = EXCLUDED.custom_field_15,
       custom_field_16 = EXCLUDED.custom_field_16,
       custom_field_17 = EXCLUDED.custom_field_17,
       custom_field_18 = EXCLUDED.custom_field_18,
       custom_field_19 = EXCLUDED.custom_field_19,
       custom_field_20 = EXCLUDED.custom_field_20,
       source_updated_at = EXCLUDED.source_updated_at,
       source_hash = EXCLUDED.source_hash,
       deleted_at = NULL,
       last_updated_at = now()
 WHERE (EXCLUDED.source_updated_at IS NULL OR w.source_updated_at IS NULL
        OR w.source_updated_at <= EXCLUDED.source_updated_at)
   AND (w.source_hash, w.deleted_at) IS DISTINCT FROM (EXCLUDED.source_hash, NULL)
RETURNING w.id, w.external_id, (xmax = 0) AS inserted;

-- name: raw_table_exists
SELECT to_regclass($1) IS NOT NULL;

-- name: lock_raw_table
-- Two transforms may meet a new stream at once; CREATE TABLE IF NOT EXISTS alone can then
-- fail on the catalog's unique index, so creation is serialised per table name.
SELECT pg_advisory_xact_lock(hashtextextended('etld.rest/' || $1::text, 0));

-- name: create_raw_table
CREATE TABLE IF NOT EXISTS {table} (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id       bigint      NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    integration_id  bigint      NOT NULL REFERENCES integrations(id) ON DELETE CASCADE,
    external_id     text        NOT NULL,
    payload         jsonb       NOT NULL,
    -- The raw page the payload came from: a page stored earlier never replaces a later one.
    raw_id          bigint      NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, integration_id, external_id)
);

-- name: index_raw_table
CREATE INDEX IF NOT EXISTS {index} ON {table} (integration_id);

-- name: register_raw_table
INSERT INTO rest_raw_tables (integration_id, stream, tenant_id, table_name)
VALUES ($1, $2, $3, $4)
ON CONFLICT DO NOTHING;

-- name: upsert_raw_rows
-- $4: a JSON array of objects with external_id and payload; RETURNING lists the rows written.
INSERT INTO {table} AS t (tenant_id, integration_id, external_id, payload, raw_id)
SELECT $1, $2, r.external_id, r.payload, $3
  FROM json_to_recordset($4::json) AS r (external_id text, payload jsonb)
ON CONFLICT (tenant_id, integration_id, external_id) DO UPDATE
   SET payload = EXCLUDED.payload, raw_id = EXCLUDED.raw_id, updated_at = now()
 WHERE t.raw_id <= EXCLUDED.raw_id AND t.payload IS DISTINCT FROM EXCLUDED.payload
RETURNING t.external_id;

-- name: raw_tables_of_integration
SELECT stream, table_name, created_at FROM rest_raw_tables
 WHERE integration_id = $1
 ORDER BY stream;
