-- Jira source: extraction checkpoints, and the idempotent bulk loads of each transform.
-- Row sets travel as one JSON array parameter read by json_to_recordset (one pass over the
-- text; jsonb_to_recordset first builds a jsonb value, a third more server CPU), so a page is
-- one statement whatever its size, and every column name is spelled out here.

-- name: active_projects
SELECT external_id, key FROM projects
 WHERE tenant_id = $1 AND integration_id = $2 AND active
 ORDER BY key;

-- name: upsert_projects
INSERT INTO projects AS p (tenant_id, integration_id, external_id, key, name, project_type, lead,
                           raw_updated_at)
SELECT $1, $2, r.external_id, r.key, r.name, r.project_type, r.lead, r.raw_updated_at
  FROM json_to_recordset($3::json) AS r (external_id text, key text, name text,
                                         project_type text, lead text,
                                         raw_updated_at timestamptz)
ON CONFLICT (tenant_id, integration_id, external_id) DO UPDATE
   SET key = EXCLUDED.key, name = EXCLUDED.name, project_type = EXCLUDED.project_type,
       lead = EXCLUDED.lead, raw_updated_at = EXCLUDED.raw_updated_at, active = true,
       updated_at = now()
 WHERE (p.key, p.name, p.project_type, p.lead, p.raw_updated_at, p.active)
       IS DISTINCT FROM (EXCLUDED.key, EXCLUDED.name, EXCLUDED.project_type, EXCLUDED.lead,
                         EXCLUDED.raw_updated_at, true)
RETURNING id;

-- name: upsert_wits
INSERT INTO wits AS w (tenant_id, integration_id, external_id, name, description,
                       hierarchy_level, subtask, icon_url)
SELECT $1, $2, r.external_id, r.name, r.description, r.hierarchy_level,
       COALESCE(r.subtask, false), r.icon_url
  FROM json_to_recordset($3::json) AS r (external_id text, name text, description text,
                                         hierarchy_level integer, subtask boolean,
                                         icon_url text)
ON CONFLICT (tenant_id, integration_id, external_id) DO UPDATE
   SET name = EXCLUDED.name, description = EXCLUDED.description,
       hierarchy_level = EXCLUDED.hierarchy_level, subtask = EXCLUDED.subtask,
       icon_url = EXCLUDED.icon_url, updated_at = now()
 WHERE (w.name, w.description, w.hierarchy_level, w.subtask, w.icon_url)
       IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.description, EXCLUDED.hierarchy_level,
                         EXCLUDED.subtask, EXCLUDED.icon_url)
RETURNING id;

-- name: link_projects_wits
-- $3: (project_ext, wit_ext) pairs; $4: every project of the page, so a project whose issue
-- types were all removed loses its links too.
WITH pairs AS (
    SELECT p.id AS project_id, w.id AS wit_id
      FROM json_to_recordset($3::json) AS r (project_ext text, wit_ext text)
      JOIN projects p ON p.tenant_id = $1 AND p.integration_id = $2 AND p.external_id = r.project_ext
      JOIN wits w ON w.tenant_id = $1 AND w.integration_id = $2 AND w.external_id = r.wit_ext
), stale AS (
    DELETE FROM projects_wits pw
     USING projects p
     WHERE p.id = pw.project_id AND p.tenant_id = $1 AND p.integration_id = $2
       AND p.external_id = ANY($4::text[])
       AND NOT EXISTS (SELECT 1 FROM pairs WHERE pairs.project_id = pw.project_id
                                             AND pairs.wit_id = pw.wit_id)
)
INSERT INTO projects_wits (tenant_id, project_id, wit_id)
SELECT $1, project_id, wit_id FROM pairs
ON CONFLICT DO NOTHING;

-- name: upsert_statuses
-- A page that does not know a status' category (project statuses may omit it) keeps the
-- category another page stored.
INSERT INTO statuses AS s (tenant_id, integration_id, external_id, name, category, description)
SELECT $1, $2, r.external_id, r.name, r.category, r.description
  FROM json_to_recordset($3::json) AS r (external_id text, name text, category text,
                                         description text)
ON CONFLICT (tenant_id, integration_id, external_id) DO UPDATE
   SET name = EXCLUDED.name,
       category = COALESCE(EXCLUDED.category, s.category),
       description = COALESCE(EXCLUDED.description, s.description),
       updated_at = now()
 WHERE (s.name, s.category, s.description)
       IS DISTINCT FROM (EXCLUDED.name, COALESCE(EXCLUDED.category, s.category),
                         COALESCE(EXCLUDED.description, s.description))
RETURNING id;

-- name: default_status_mappings
-- Default rows follow the Jira category; a mapping a person set ('user') is never touched.
INSERT INTO status_mappings AS m (tenant_id, integration_id, status_id, flow_category, source)
SELECT $1, $2, s.id, r.flow_category, 'default'
  FROM json_to_recordset($3::json) AS r (external_id text, flow_category text)
  JOIN statuses s ON s.tenant_id = $1 AND s.integration_id = $2 AND s.external_id = r.external_id
ON CONFLICT (tenant_id, status_id) DO UPDATE
   SET flow_category = EXCLUDED.flow_category, updated_at = now()
 WHERE m.source = 'default' AND m.flow_category IS DISTINCT FROM EXCLUDED.flow_category;

-- name: link_projects_statuses
-- $3: the project's external id; $4: (status_ext, wit_ext) pairs, wit_ext NULL for a status
-- of the whole project. Links the project no longer has are removed.
WITH project AS (
    SELECT id FROM projects WHERE tenant_id = $1 AND integration_id = $2 AND external_id = $3
), pairs AS (
    SELECT DISTINCT s.id AS status_id, w.id AS wit_id
      FROM json_to_recordset($4::json) AS r (status_ext text, wit_ext text)
      JOIN statuses s ON s.tenant_id = $1 AND s.integration_id = $2 AND s.external_id = r.status_ext
      LEFT JOIN wits w ON w.tenant_id = $1 AND w.integration_id = $2 AND w.external_id = r.wit_ext
), stale AS (
    DELETE FROM projects_statuses ps
     USING project
     WHERE ps.project_id = project.id
       AND NOT EXISTS (SELECT 1 FROM pairs WHERE pairs.status_id = ps.status_id
                                             AND pairs.wit_id IS NOT DISTINCT FROM ps.wit_id)
)
INSERT INTO projects_statuses (tenant_id, project_id, status_id, wit_id)
SELECT $1, project.id, pairs.status_id, pairs.wit_id FROM project, pairs
ON CONFLICT DO NOTHING;

-- name: status_flow
-- Each status with its Jira category and the tenant's flow category (NULL: no mapping row).
SELECT s.id, s.external_id, s.category, m.flow_category
  FROM statuses s
  LEFT JOIN status_mappings m ON m.tenant_id = s.tenant_id AND m.status_id = s.id
 WHERE s.tenant_id = $1 AND s.integration_id = $2;

-- name: field_slots
-- The integration's custom field mapping as (slot, field id) rows; slots are the fixed names
-- of the work_items columns they fill.
SELECT v.slot, cf.external_id
  FROM custom_fields_mapping m
 CROSS JOIN LATERAL (VALUES
       ('team', m.team_field_id), ('story_points', m.story_points_field_id),
       ('code_changed', m.code_changed_field_id),
       ('custom_field_01', m.custom_field_01_id), ('custom_field_02', m.custom_field_02_id),
       ('custom_field_03', m.custom_field_03_id), ('custom_field_04', m.custom_field_04_id),
       ('custom_field_05', m.custom_field_05_id), ('custom_field_06', m.custom_field_06_id),
       ('custom_field_07', m.custom_field_07_id), ('custom_field_08', m.custom_field_08_id),
       ('custom_field_09', m.custom_field_09_id), ('custom_field_10', m.custom_field_10_id),
       ('custom_field_11', m.custom_field_11_id), ('custom_field_12', m.custom_field_12_id),
       ('custom_field_13', m.custom_field_13_id), ('custom_field_14', m.custom_field_14_id),
       ('custom_field_15', m.custom_field_15_id), ('custom_field_16', m.custom_field_16_id),
       ('custom_field_17', m.custom_field_17_id), ('custom_field_18', m.custom_field_18_id),
       ('custom_field_19', m.custom_field_19_id), ('custom_field_20', m.custom_field_20_id)
       ) AS v (slot, field_id)
  JOIN custom_fields cf ON cf.id = v.field_id
 WHERE m.tenant_id = $1 AND m.integration_id = $2 AND m.active;

-- name: field_types
SELECT external_id, field_type, schema FROM custom_fields
 WHERE tenant_id = $1 AND integration_id = $2;

-- name: upsert_work_items
-- One statement per page: $3 is a JSON array of rows (the columns named below; the mapped
-- custom_field_NN columns are this fixed list). An older page never overwrites a newer
-- version, and a row whose derived content is unchanged is not rewritten; RETURNING lists
-- only the rows actually written.
INSERT INTO work_items AS w (
    tenant_id, integration_id, external_id, key, project_id, wit_id, status_id, summary,
    description, priority, assignee, assignee_account_id, reporter, labels, parent_key,
    resolution, created, updated, resolved, due_date, team, story_points, code_changed,
    custom_field_01, custom_field_02, custom_field_03, custom_field_04, custom_field_05,
    custom_field_06, custom_field_07, custom_field_08, custom_field_09, custom_field_10,
    custom_field_11, custom_field_12, custom_field_13, custom_field_14, custom_field_15,
    custom_field_16, custom_field_17, custom_field_18, custom_field_19, custom_field_20,
    custom_fields_overflow, work_first_committed_at, work_first_started_at,
    work_last_started_at, work_first_completed_at, work_last_completed_at, total_work_starts,
    total_completions, total_backlog_returns, total_work_time_seconds,
    total_review_time_seconds, total_cycle_time_seconds, total_lead_time_seconds,
    workflow_complexity_score, rework_indicator, direct_completion, dev_pr_count,
    source_updated_at, source_hash
)
SELECT
    $1, $2, r.external_id, r.key, p.id, t.id, s.id, r.summary, r.description, r.priority,
    r.assignee, r.assignee_account_id, r.reporter, r.labels, r.parent_key, r.resolution,
    r.created, r.updated, r.resolved, r.due_date, r.team, r.story_points, r.code_changed,
    r.custom_field_01, r.custom_field_02, r.custom_field_03, r.custom_field_04,
    r.custom_field_05, r.custom_field_06, r.custom_field_07, r.custom_field_08,
    r.custom_field_09, r.custom_field_10, r.custom_field_11, r.custom_field_12,
    r.custom_field_13, r.custom_field_14, r.custom_field_15, r.custom_field_16,
    r.custom_field_17, r.custom_field_18, r.custom_field_19, r.custom_field_20,
    r.custom_fields_overflow, r.work_first_committed_at, r.work_first_started_at,
    r.work_last_started_at, r.work_first_completed_at, r.work_last_completed_at,
    r.total_work_starts, r.total_completions, r.total_backlog_returns,
    r.total_work_time_seconds, r.total_review_time_seconds, r.total_cycle_time_seconds,
    r.total_lead_time_seconds, r.workflow_complexity_score, r.rework_indicator,
    r.direct_completion, r.dev_pr_count, r.updated, r.source_hash
  FROM json_to_recordset($3::json) AS r (
       external_id text, key text, project_ext text, wit_ext text, status_ext text,
       summary text, description text, priority text, assignee text, assignee_account_id text,
       reporter text, labels text[], parent_key text, resolution text, created timestamptz,
       updated timestamptz, resolved timestamptz, due_date date, team text,
       story_points double precision, code_changed boolean, custom_field_01 text,
       custom_field_02 text, custom_field_03 text, custom_field_04 text, custom_field_05 text,
       custom_field_06 text, custom_field_07 text, custom_field_08 text, custom_field_09 text,
       custom_field_10 text, custom_field_11 text, custom_field_12 text, custom_field_13 text,
       custom_field_14 text, custom_field_15 text, custom_field_16 text, custom_field_17 text,
       custom_field_18 text, custom_field_19 text, custom_field_20 text,
       custom_fields_overflow jsonb, work_first_committed_at timestamptz,
       work_first_started_at timestamptz, work_last_started_at timestamptz,
       work_first_completed_at timestamptz, work_last_completed_at timestamptz,
       total_work_starts integer, total_completions integer, total_backlog_returns integer,
       total_work_time_seconds double precision, total_review_time_seconds double precision,
       total_cycle_time_seconds double precision, total_lead_time_seconds double precision,
       workflow_complexity_score integer, rework_indicator boolean, direct_completion boolean,
       dev_pr_count integer, source_hash text
       )
  LEFT JOIN projects p ON p.tenant_id = $1 AND p.integration_id = $2 AND p.external_id = r.project_ext
  LEFT JOIN wits t ON t.tenant_id = $1 AND t.integration_id = $2 AND t.external_id = r.wit_ext
  LEFT JOIN statuses s ON s.tenant_id = $1 AND s.integration_id = $2 AND s.external_id = r.status_ext
ON CONFLICT (tenant_id, integration_id, external_id) DO UPDATE
   SET key = EXCLUDED.key,
       project_id = EXCLUDED.project_id,
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
       custom_fields_overflow = EXCLUDED.custom_fields_overflow,
       work_first_committed_at = EXCLUDED.work_first_committed_at,
       work_first_started_at = EXCLUDED.work_first_started_at,
       work_last_started_at = EXCLUDED.work_last_started_at,
       work_first_completed_at = EXCLUDED.work_first_completed_at,
       work_last_completed_at = EXCLUDED.work_last_completed_at,
       total_work_starts = EXCLUDED.total_work_starts,
       total_completions = EXCLUDED.total_completions,
       total_backlog_returns = EXCLUDED.total_backlog_returns,
       total_work_time_seconds = EXCLUDED.total_work_time_seconds,
       total_review_time_seconds = EXCLUDED.total_review_time_seconds,
       total_cycle_time_seconds = EXCLUDED.total_cycle_time_seconds,
       total_lead_time_seconds = EXCLUDED.total_lead_time_seconds,
       workflow_complexity_score = EXCLUDED.workflow_complexity_score,
       rework_indicator = EXCLUDED.rework_indicator,
       direct_completion = EXCLUDED.direct_completion,
       dev_pr_count = EXCLUDED.dev_pr_count,
       source_updated_at = EXCLUDED.source_updated_at,
       source_hash = EXCLUDED.source_hash,
       last_updated_at = now()
 WHERE (w.source_updated_at IS NULL OR w.source_updated_at <= EXCLUDED.source_updated_at)
   AND (w.source_hash, w.project_id, w.wit_id, w.status_id)
       IS DISTINCT FROM (EXCLUDED.source_hash, EXCLUDED.project_id, EXCLUDED.wit_id, EXCLUDED.status_id)
RETURNING w.id, w.external_id, (xmax = 0) AS inserted;

-- name: replace_changelogs
-- $3: the work items written by this page; $4: their complete status history. Rows of those
-- items that are no longer in the history are removed.
WITH incoming AS (
    SELECT r.work_item_id, r.external_id, fs.id AS from_status_id, ts.id AS to_status_id,
           r.transition_start_date, r.transition_change_date, r.time_in_status_seconds, r.author
      FROM json_to_recordset($4::json) AS r (work_item_id bigint, external_id text,
                                             from_ext text, to_ext text,
                                             transition_start_date timestamptz,
                                             transition_change_date timestamptz,
                                             time_in_status_seconds double precision,
                                             author text)
      LEFT JOIN statuses fs ON fs.tenant_id = $1 AND fs.integration_id = $2 AND fs.external_id = r.from_ext
      LEFT JOIN statuses ts ON ts.tenant_id = $1 AND ts.integration_id = $2 AND ts.external_id = r.to_ext
), stale AS (
    DELETE FROM changelogs c
     WHERE c.work_item_id = ANY($3::bigint[])
       AND NOT EXISTS (SELECT 1 FROM incoming i WHERE i.work_item_id = c.work_item_id
                                                  AND i.external_id = c.external_id)
)
INSERT INTO changelogs AS c (tenant_id, integration_id, work_item_id, external_id, from_status_id,
                             to_status_id, transition_start_date, transition_change_date,
                             time_in_status_seconds, author)
SELECT $1, $2, work_item_id, external_id, from_status_id, to_status_id, transition_start_date,
       transition_change_date, time_in_status_seconds, author
  FROM incoming
ON CONFLICT (work_item_id, external_id) DO UPDATE
   SET from_status_id = EXCLUDED.from_status_id, to_status_id = EXCLUDED.to_status_id,
       transition_start_date = EXCLUDED.transition_start_date,
       transition_change_date = EXCLUDED.transition_change_date,
       time_in_status_seconds = EXCLUDED.time_in_status_seconds, author = EXCLUDED.author
 WHERE (c.from_status_id, c.to_status_id, c.transition_start_date, c.transition_change_date,
        c.time_in_status_seconds, c.author)
       IS DISTINCT FROM (EXCLUDED.from_status_id, EXCLUDED.to_status_id,
                         EXCLUDED.transition_start_date, EXCLUDED.transition_change_date,
                         EXCLUDED.time_in_status_seconds, EXCLUDED.author);

-- name: soft_delete_missing
-- Full-sync reconciliation: live items the source no longer lists are marked deleted. Items
-- updated after the id scan began ($4) were loaded since and are left alone.
-- NOT IN over the unnested list is planned as a hashed subplan whatever the statistics say;
-- an anti-join planned on a freshly loaded (unanalysed) table became a nested loop comparing
-- every item with every listed id (3.6 s for 10,000 issues, quadratic beyond).
UPDATE work_items w
   SET deleted_at = now(), last_updated_at = now()
 WHERE w.tenant_id = $1 AND w.integration_id = $2 AND w.deleted_at IS NULL
   AND (w.source_updated_at IS NULL OR w.source_updated_at < $4)
   AND w.external_id NOT IN (SELECT unnest($3::text[]))
RETURNING w.external_id;

-- name: undelete_present
UPDATE work_items w
   SET deleted_at = NULL, last_updated_at = now()
  FROM unnest($3::text[]) AS seen (id)
 WHERE w.tenant_id = $1 AND w.integration_id = $2 AND w.deleted_at IS NOT NULL
   AND w.external_id = seen.id
RETURNING w.external_id;

-- name: dev_status_candidates
-- Items worth a dev-status call: their development summary reports pull requests, or the site
-- has no such summary (NULL). $3: only items updated since then (NULL: all).
SELECT external_id FROM work_items
 WHERE tenant_id = $1 AND integration_id = $2 AND deleted_at IS NULL
   AND (dev_pr_count IS NULL OR dev_pr_count > 0)
   AND ($3::timestamptz IS NULL OR source_updated_at >= $3)
 ORDER BY source_updated_at DESC NULLS LAST, external_id
 LIMIT $4;

-- name: replace_dev_links
-- $3: issue ids whose dev-status was fetched; $4: their pull requests. Links found before
-- and no longer reported are removed; pull requests already synced are linked at once.
WITH items AS (
    SELECT id, external_id FROM work_items
     WHERE tenant_id = $1 AND integration_id = $2 AND external_id = ANY($3::text[])
), incoming AS (
    SELECT DISTINCT ON (i.id, r.repository, r.number)
           i.id AS work_item_id, r.repository, r.number, r.url
      FROM json_to_recordset($4::json) AS r (issue_id text, repository text, number integer,
                                             url text)
      JOIN items i ON i.external_id = r.issue_id
), stale AS (
    DELETE FROM work_items_prs_links l
     USING items
     WHERE l.work_item_id = items.id AND l.link_source = 'dev_status'
       AND NOT EXISTS (SELECT 1 FROM incoming n WHERE n.work_item_id = l.work_item_id
                                                  AND n.repository = l.repository_full_name
                                                  AND n.number = l.pr_number)
)
INSERT INTO work_items_prs_links AS l (tenant_id, work_item_id, pull_request_id,
                                       repository_full_name, pr_number, pr_url, link_source)
SELECT $1, n.work_item_id,
       (SELECT pr.id FROM pull_requests pr
          JOIN repositories rp ON rp.id = pr.repository_id
         WHERE rp.tenant_id = $1 AND lower(rp.full_name) = lower(n.repository)
           AND pr.number = n.number
         LIMIT 1),
       n.repository, n.number, n.url, 'dev_status'
  FROM incoming n
ON CONFLICT (tenant_id, work_item_id, repository_full_name, pr_number, link_source) DO UPDATE
   SET pr_url = EXCLUDED.pr_url, pull_request_id = COALESCE(EXCLUDED.pull_request_id, l.pull_request_id)
 WHERE (l.pr_url, l.pull_request_id)
       IS DISTINCT FROM (EXCLUDED.pr_url, COALESCE(EXCLUDED.pull_request_id, l.pull_request_id));

-- name: upsert_custom_fields
-- $4: whether the page knows operations (create metadata does, /field does not); a row
-- without a schema keeps the stored one.
INSERT INTO custom_fields AS f (tenant_id, integration_id, external_id, name, field_type, schema,
                                operations)
SELECT $1, $2, r.external_id, r.name, r.field_type, COALESCE(r.schema, '{}'),
       COALESCE(r.operations, '[]')
  FROM json_to_recordset($3::json) AS r (external_id text, name text, field_type text,
                                         schema jsonb, operations jsonb)
ON CONFLICT (tenant_id, integration_id, external_id) DO UPDATE
   SET name = EXCLUDED.name,
       field_type = CASE WHEN EXCLUDED.schema = '{}' THEN f.field_type ELSE EXCLUDED.field_type END,
       schema = CASE WHEN EXCLUDED.schema = '{}' THEN f.schema ELSE EXCLUDED.schema END,
       operations = CASE WHEN $4 THEN EXCLUDED.operations ELSE f.operations END,
       active = true, last_updated_at = now()
 WHERE (f.name, f.field_type, f.schema, f.operations, f.active)
       IS DISTINCT FROM (EXCLUDED.name,
                         CASE WHEN EXCLUDED.schema = '{}' THEN f.field_type ELSE EXCLUDED.field_type END,
                         CASE WHEN EXCLUDED.schema = '{}' THEN f.schema ELSE EXCLUDED.schema END,
                         CASE WHEN $4 THEN EXCLUDED.operations ELSE f.operations END,
                         true)
RETURNING id;
