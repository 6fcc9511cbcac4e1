-- Custom field and status mappings (the mappings API), and the recompute of workflow
-- metrics from stored changelogs after a status remap. Every statement is scoped by
-- tenant_id and integration_id; the slot columns of custom_fields_mapping are spelled out
-- here, in the fixed order of etld.mappings.SLOTS.

-- name: integration
SELECT id, tenant_id, name, provider, active FROM integrations WHERE id = $1;

-- name: job_of_integration
-- The job that syncs an integration (the first, should there be several).
SELECT id FROM etl_jobs
 WHERE tenant_id = $1 AND integration_id = $2
 ORDER BY job_order, id
 LIMIT 1;

-- name: fields
SELECT id, external_id, name, field_type, schema, operations, active, last_updated_at
  FROM custom_fields
 WHERE tenant_id = $1 AND integration_id = $2
 ORDER BY lower(name), external_id;

-- name: mapping
SELECT team_field_id, code_changed_field_id, story_points_field_id,
       custom_field_01_id, custom_field_02_id, custom_field_03_id, custom_field_04_id,
       custom_field_05_id, custom_field_06_id, custom_field_07_id, custom_field_08_id,
       custom_field_09_id, custom_field_10_id, custom_field_11_id, custom_field_12_id,
       custom_field_13_id, custom_field_14_id, custom_field_15_id, custom_field_16_id,
       custom_field_17_id, custom_field_18_id, custom_field_19_id, custom_field_20_id,
       active, last_updated_at
  FROM custom_fields_mapping
 WHERE tenant_id = $1 AND integration_id = $2;

-- name: save_mapping
-- $3..$25: field ids for team, code_changed, story_points, custom_field_01..20 (NULL: empty
-- slot). The whole mapping is replaced. The join keeps every id inside the integration even
-- if a caller skipped validation: a foreign id stores NULL.
WITH given (slot, field_id) AS (
    VALUES (1, $3::bigint), (2, $4::bigint), (3, $5::bigint), (4, $6::bigint),
           (5, $7::bigint), (6, $8::bigint), (7, $9::bigint), (8, $10::bigint),
           (9, $11::bigint), (10, $12::bigint), (11, $13::bigint), (12, $14::bigint),
           (13, $15::bigint), (14, $16::bigint), (15, $17::bigint), (16, $18::bigint),
           (17, $19::bigint), (18, $20::bigint), (19, $21::bigint), (20, $22::bigint),
           (21, $23::bigint), (22, $24::bigint), (23, $25::bigint)
), checked AS (
    SELECT g.slot, f.id
      FROM given g
      LEFT JOIN custom_fields f ON f.id = g.field_id AND f.tenant_id = $1 AND f.integration_id = $2
)
INSERT INTO custom_fields_mapping AS m (
    tenant_id, integration_id, team_field_id, code_changed_field_id, story_points_field_id,
    custom_field_01_id, custom_field_02_id, custom_field_03_id, custom_field_04_id,
    custom_field_05_id, custom_field_06_id, custom_field_07_id, custom_field_08_id,
    custom_field_09_id, custom_field_10_id, custom_field_11_id, custom_field_12_id,
    custom_field_13_id, custom_field_14_id, custom_field_15_id, custom_field_16_id,
    custom_field_17_id, custom_field_18_id, custom_field_19_id, custom_field_20_id
)
SELECT $1, $2,
       max(id) FILTER (WHERE slot = 1), max(id) FILTER (WHERE slot = 2),
       max(id) FILTER (WHERE slot = 3), max(id) FILTER (WHERE slot = 4),
       max(id) FILTER (WHERE slot = 5), max(id) FILTER (WHERE slot = 6),
       max(id) FILTER (WHERE slot = 7), max(id) FILTER (WHERE slot = 8),
       max(id) FILTER (WHERE slot = 9), max(id) FILTER (WHERE slot = 10),
       max(id) FILTER (WHERE slot = 11), max(id) FILTER (WHERE slot = 12),
       max(id) FILTER (WHERE slot = 13), max(id) FILTER (WHERE slot = 14),
       max(id) FILTER (WHERE slot = 15), max(id) FILTER (WHERE slot = 16),
       max(id) FILTER (WHERE slot = 17), max(id) FILTER (WHERE slot = 18),
       max(id) FILTER (WHERE slot = 19), max(id) FILTER (WHERE slot = 20),
       max(id) FILTER (WHERE slot = 21), max(id) FILTER (WHERE slot = 22),
       max(id) FILTER (WHERE slot = 23)
  FROM checked
ON CONFLICT (tenant_id, integration_id) DO UPDATE
   SET team_field_id = EXCLUDED.team_field_id,
       code_changed_field_id = EXCLUDED.code_changed_field_id,
       story_points_field_id = EXCLUDED.story_points_field_id,
       custom_field_01_id = EXCLUDED.custom_field_01_id,
       custom_field_02_id = EXCLUDED.custom_field_02_id,
       custom_field_03_id = EXCLUDED.custom_field_03_id,
       custom_field_04_id = EXCLUDED.custom_field_04_id,
       custom_field_05_id = EXCLUDED.custom_field_05_id,
       custom_field_06_id = EXCLUDED.custom_field_06_id,
       custom_field_07_id = EXCLUDED.custom_field_07_id,
       custom_field_08_id = EXCLUDED.custom_field_08_id,
       custom_field_09_id = EXCLUDED.custom_field_09_id,
       custom_field_10_id = EXCLUDED.custom_field_10_id,
       custom_field_11_id = EXCLUDED.custom_field_11_id,
       custom_field_12_id = EXCLUDED.custom_field_12_id,
       custom_field_13_id = EXCLUDED.custom_field_13_id,
       custom_field_14_id = EXCLUDED.custom_field_14_id,
       custom_field_15_id = EXCLUDED.custom_field_15_id,
       custom_field_16_id = EXCLUDED.custom_field_16_id,
       custom_field_17_id = EXCLUDED.custom_field_17_id,
       custom_field_18_id = EXCLUDED.custom_field_18_id,
       custom_field_19_id = EXCLUDED.custom_field_19_id,
       custom_field_20_id = EXCLUDED.custom_field_20_id,
       active = true,
       last_updated_at = now();

-- name: statuses
-- Each status of the integration with its Jira category and stored mapping (NULLs: none).
SELECT s.id, s.external_id, s.name, s.category, m.flow_category, m.source, m.updated_at
  FROM statuses s
  LEFT JOIN status_mappings m ON m.tenant_id = s.tenant_id AND m.status_id = s.id
 WHERE s.tenant_id = $1 AND s.integration_id = $2
 ORDER BY lower(s.name), s.id;

-- name: save_status_mappings
-- $3: [{status_id, flow_category, source}]; statuses outside the integration are ignored.
INSERT INTO status_mappings AS m (tenant_id, integration_id, status_id, flow_category, source)
SELECT $1, $2, s.id, r.flow_category, r.source
  FROM json_to_recordset($3::json) AS r (status_id bigint, flow_category text, source text)
  JOIN statuses s ON s.id = r.status_id AND s.tenant_id = $1 AND s.integration_id = $2
ON CONFLICT (tenant_id, status_id) DO UPDATE
   SET flow_category = EXCLUDED.flow_category, source = EXCLUDED.source, updated_at = now()
 WHERE (m.flow_category, m.source) IS DISTINCT FROM (EXCLUDED.flow_category, EXCLUDED.source);

-- name: lock_status_save
-- Status mapping saves of one integration take turns (until the transaction ends).
SELECT pg_advisory_xact_lock(hashtextextended('etld.status_save:' || $1::bigint, 0));

-- name: lock_remap
-- Serialises metric recomputes of one integration (session lock, held by one connection).
SELECT pg_advisory_lock(hashtextextended('etld.status_remap:' || $1::bigint, 0));

-- name: unlock_remap
SELECT pg_advisory_unlock(hashtextextended('etld.status_remap:' || $1::bigint, 0));

-- name: items_through_statuses
-- Work items whose history enters or leaves any of the statuses $3: only their metrics can
-- change when those statuses move to another flow category.
SELECT DISTINCT work_item_id FROM changelogs
 WHERE tenant_id = $1 AND integration_id = $2
   AND (from_status_id = ANY($3::bigint[]) OR to_status_id = ANY($3::bigint[]))
 ORDER BY work_item_id;

-- name: items_created
SELECT id, created FROM work_items
 WHERE tenant_id = $1 AND integration_id = $2 AND id = ANY($3::bigint[]);

-- name: changelogs_of_items
SELECT work_item_id, external_id, from_status_id, to_status_id, transition_change_date
  FROM changelogs
 WHERE tenant_id = $1 AND work_item_id = ANY($2::bigint[]);

-- name: update_metrics
-- $3: [{id, <the 15 metric columns>}]. Only rows whose metrics differ are written. The
-- source hash is cleared: it digests the metrics too, and a later transform must rewrite
-- the row rather than take the stored one for current.
UPDATE work_items AS w
   SET work_first_committed_at = r.work_first_committed_at,
       work_first_started_at = r.work_first_started_at,
       work_last_started_at = r.work_last_started_at,
       work_first_completed_at = r.work_first_completed_at,
       work_last_completed_at = r.work_last_completed_at,
       total_work_starts = r.total_work_starts,
       total_completions = r.total_completions,
       total_backlog_returns = r.total_backlog_returns,
       total_work_time_seconds = r.total_work_time_seconds,
       total_review_time_seconds = r.total_review_time_seconds,
       total_cycle_time_seconds = r.total_cycle_time_seconds,
       total_lead_time_seconds = r.total_lead_time_seconds,
       workflow_complexity_score = r.workflow_complexity_score,
       rework_indicator = r.rework_indicator,
       direct_completion = r.direct_completion,
       source_hash = NULL,
       last_updated_at = now()
  FROM json_to_recordset($3::json) AS r (
       id bigint, work_first_committed_at timestamptz, work_first_started_at timestamptz,
       work_last_started_at timestamptz, work_first_completed_at timestamptz,
       work_last_completed_at timestamptz, total_work_starts integer, total_completions integer,
       total_backlog_returns integer, total_work_time_seconds double precision,
       total_review_time_seconds double precision, total_cycle_time_seconds double precision,
       total_lead_time_seconds double precision, workflow_complexity_score integer,
       rework_indicator boolean, direct_completion boolean
       )
 WHERE w.id = r.id AND w.tenant_id = $1 AND w.integration_id = $2
   AND (w.work_first_committed_at, w.work_first_started_at, w.work_last_started_at,
        w.work_first_completed_at, w.work_last_completed_at, w.total_work_starts,
        w.total_completions, w.total_backlog_returns, w.total_work_time_seconds,
        w.total_review_time_seconds, w.total_cycle_time_seconds, w.total_lead_time_seconds,
        w.workflow_complexity_score, w.rework_indicator, w.direct_completion)
       IS DISTINCT FROM
       (r.work_first_committed_at, r.work_first_started_at, r.work_last_started_at,
        r.work_first_completed_at, r.work_last_completed_at, r.total_work_starts,
        r.total_completions, r.total_backlog_returns, r.total_work_time_seconds,
        r.total_review_time_seconds, r.total_cycle_time_seconds, r.total_lead_time_seconds,
        r.workflow_complexity_score, r.rework_indicator, r.direct_completion)
RETURNING w.id;
