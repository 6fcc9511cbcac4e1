-- The admin web UI and the JSON routes it shares with the API: sessions, integrations,
-- work items and the lists behind the pages. Every read of tenant data takes the tenant
-- ($1 or a named parameter) so another tenant's ids find nothing and answer 404. Where a
-- tenant parameter is nullable, NULL means the internal service principal (every tenant).

-- name: session_user
SELECT u.id, u.tenant_id, u.username, u.display_name, u.role, u.active, u.password_hash,
       t.name AS tenant, t.active AS tenant_active
  FROM users u JOIN tenants t ON t.id = u.tenant_id
 WHERE u.id = $1;

-- name: touch_login
UPDATE users SET last_login_at = now() WHERE id = $1;


-- name: integrations_of_tenant
SELECT i.id, i.tenant_id, i.name, i.provider, i.base_url, i.username, i.credentials_hint,
       i.credentials IS NOT NULL AS has_credentials, i.settings, i.allow_private_network,
       i.active, i.created_at, i.updated_at,
       (SELECT j.id FROM etl_jobs j WHERE j.integration_id = i.id
         ORDER BY j.job_order, j.id LIMIT 1) AS job_id
  FROM integrations i
 WHERE i.tenant_id = $1
 ORDER BY lower(i.name), i.id
 LIMIT $2 OFFSET $3;

-- name: integration_of_tenant
-- $2 NULL: the service principal, which may read any tenant's integration.
SELECT i.id, i.tenant_id, i.name, i.provider, i.base_url, i.username, i.credentials_hint,
       i.credentials IS NOT NULL AS has_credentials, i.settings, i.allow_private_network,
       i.active, i.created_at, i.updated_at,
       (SELECT j.id FROM etl_jobs j WHERE j.integration_id = i.id
         ORDER BY j.job_order, j.id LIMIT 1) AS job_id
  FROM integrations i
 WHERE i.id = $1 AND ($2::bigint IS NULL OR i.tenant_id = $2);

-- name: integration_secret_row
-- Only for calls to the provider (test connection); never sent to a client.
SELECT id, tenant_id, name, provider, base_url, username, credentials, settings,
       allow_private_network, active
  FROM integrations
 WHERE id = $1 AND tenant_id = $2;

-- name: integration_names
SELECT id, name, provider, active FROM integrations WHERE tenant_id = $1 ORDER BY lower(name), id;

-- name: insert_integration
INSERT INTO integrations (tenant_id, name, provider, base_url, username, settings,
                          allow_private_network, active)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
RETURNING id;

-- name: update_integration
UPDATE integrations
   SET name = $3, base_url = $4, username = $5, settings = $6,
       allow_private_network = $7, active = $8, updated_at = now()
 WHERE id = $1 AND tenant_id = $2
RETURNING id;

-- name: set_credentials
UPDATE integrations SET credentials = $3, credentials_hint = $4, updated_at = now()
 WHERE id = $1 AND tenant_id = $2;

-- name: set_integration_active
UPDATE integrations SET active = $3, updated_at = now()
 WHERE id = $1 AND tenant_id = $2
RETURNING id;

-- name: next_job_order
SELECT COALESCE(max(job_order), 0) + 1 FROM etl_jobs WHERE tenant_id = $1;

-- name: job_name_taken
SELECT EXISTS (SELECT 1 FROM etl_jobs WHERE tenant_id = $1 AND name = $2);


-- name: wits_of_integration
SELECT w.id, w.external_id, w.name, w.description, w.hierarchy_level, w.subtask,
       (SELECT count(*) FROM projects_wits pw WHERE pw.wit_id = w.id) AS projects,
       (SELECT count(*) FROM work_items wi
         WHERE wi.wit_id = w.id AND wi.deleted_at IS NULL) AS work_items
  FROM wits w
 WHERE w.tenant_id = $1 AND w.integration_id = $2
 ORDER BY w.hierarchy_level DESC NULLS LAST, lower(w.name), w.id;


-- name: work_item_filters
-- Choices for the work item filters: projects, types and statuses of the tenant.
SELECT 'project' AS kind, p.id, p.key || ' · ' || COALESCE(p.name, '') AS label
  FROM projects p WHERE p.tenant_id = $1
UNION ALL
SELECT 'type', w.id, w.name FROM wits w WHERE w.tenant_id = $1
UNION ALL
SELECT 'status', s.id, s.name FROM statuses s WHERE s.tenant_id = $1
 ORDER BY 1, 3, 2;

-- name: slot_labels
-- Which custom field fills each mapped slot ($2 NULL: over every integration of the tenant).
SELECT v.slot, string_agg(DISTINCT f.name, ' / ') AS names
  FROM custom_fields_mapping m
 CROSS JOIN LATERAL (VALUES
        ('team', m.team_field_id), ('code_changed', m.code_changed_field_id),
        ('story_points', m.story_points_field_id),
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
  JOIN custom_fields f ON f.id = v.field_id
 WHERE m.tenant_id = $1 AND ($2::bigint IS NULL OR m.integration_id = $2)
 GROUP BY v.slot;

-- name: work_items_page
-- $5: a LIKE pattern (already escaped) matched against key, summary and description.
-- $6/$7: a mapped slot name from the fixed list below and a LIKE pattern for its value.
SELECT w.id, w.tenant_id, w.integration_id, w.key, w.summary, w.assignee, w.priority,
       w.created, w.updated, w.resolved, w.team, w.story_points,
       p.id AS project_id, p.key AS project_key, t.id AS type_id, t.name AS type_name,
       s.id AS status_id, s.name AS status_name, s.category AS status_category
  FROM work_items w
  LEFT JOIN projects p ON p.id = w.project_id
  LEFT JOIN wits t ON t.id = w.wit_id
  LEFT JOIN statuses s ON s.id = w.status_id
 WHERE w.tenant_id = $1 AND w.deleted_at IS NULL
   AND ($2::bigint IS NULL OR w.project_id = $2)
   AND ($3::bigint IS NULL OR w.wit_id = $3)
   AND ($4::bigint IS NULL OR w.status_id = $4)
   AND ($5::text IS NULL OR w.key ILIKE $5 OR w.summary ILIKE $5 OR w.description ILIKE $5)
   AND ($6::text IS NULL OR (CASE $6::text
        WHEN 'team' THEN w.team
        WHEN 'custom_field_01' THEN w.custom_field_01 WHEN 'custom_field_02' THEN w.custom_field_02
        WHEN 'custom_field_03' THEN w.custom_field_03 WHEN 'custom_field_04' THEN w.custom_field_04
        WHEN 'custom_field_05' THEN w.custom_field_05 WHEN 'custom_field_06' THEN w.custom_field_06
        WHEN 'custom_field_07' THEN w.custom_field_07 WHEN 'custom_field_08' THEN w.custom_field_08
        WHEN 'custom_field_09' THEN w.custom_field_09 WHEN 'custom_field_10' THEN w.custom_field_10
        WHEN 'custom_field_11' THEN w.custom_field_11 WHEN 'custom_field_12' THEN w.custom_field_12
        WHEN 'custom_field_13' THEN w.custom_field_13 WHEN 'custom_field_14' THEN w.custom_field_14
        WHEN 'custom_field_15' THEN w.custom_field_15 WHEN 'custom_field_16' THEN w.custom_field_16
        WHEN 'custom_field_17' THEN w.custom_field_17 WHEN 'custom_field_18' THEN w.custom_field_18
        WHEN 'custom_field_19' THEN w.custom_field_19 WHEN 'custom_field_20' THEN w.custom_field_20
        END) ILIKE $7)
 ORDER BY w.updated DESC NULLS LAST, w.id DESC
 LIMIT $8 OFFSET $9;

-- name: work_items_count
-- The same filters as work_items_page.
SELECT count(*)
  FROM work_items w
 WHERE w.tenant_id = $1 AND w.deleted_at IS NULL
   AND ($2::bigint IS NULL OR w.project_id = $2)
   AND ($3::bigint IS NULL OR w.wit_id = $3)
   AND ($4::bigint IS NULL OR w.status_id = $4)
   AND ($5::text IS NULL OR w.key ILIKE $5 OR w.summary ILIKE $5 OR w.description ILIKE $5)
   AND ($6::text IS NULL OR (CASE $6::text
        WHEN 'team' THEN w.team
        WHEN 'custom_field_01' THEN w.custom_field_01 WHEN 'custom_field_02' THEN w.custom_field_02
        WHEN 'custom_field_03' THEN w.custom_field_03 WHEN 'custom_field_04' THEN w.custom_field_04
        WHEN 'custom_field_05' THEN w.custom_field_05 WHEN 'custom_field_06' THEN w.custom_field_06
        WHEN 'custom_field_07' THEN w.custom_field_07 WHEN 'custom_field_08' THEN w.custom_field_08
        WHEN 'custom_field_09' THEN w.custom_field_09 WHEN 'custom_field_10' THEN w.custom_field_10
        WHEN 'custom_field_11' THEN w.custom_field_11 WHEN 'custom_field_12' THEN w.custom_field_12
        WHEN 'custom_field_13' THEN w.custom_field_13 WHEN 'custom_field_14' THEN w.custom_field_14
        WHEN 'custom_field_15' THEN w.custom_field_15 WHEN 'custom_field_16' THEN w.custom_field_16
        WHEN 'custom_field_17' THEN w.custom_field_17 WHEN 'custom_field_18' THEN w.custom_field_18
        WHEN 'custom_field_19' THEN w.custom_field_19 WHEN 'custom_field_20' THEN w.custom_field_20
        END) ILIKE $7);

-- name: work_item
-- $2 NULL: the service principal.
SELECT w.*, p.key AS project_key, p.name AS project_name, t.name AS type_name,
       s.name AS status_name, s.category AS status_category, i.name AS integration_name,
       i.provider
  FROM work_items w
  JOIN integrations i ON i.id = w.integration_id
  LEFT JOIN projects p ON p.id = w.project_id
  LEFT JOIN wits t ON t.id = w.wit_id
  LEFT JOIN statuses s ON s.id = w.status_id
 WHERE w.id = $1 AND ($2::bigint IS NULL OR w.tenant_id = $2);

-- name: work_item_transitions
SELECT c.id, c.external_id, fs.name AS from_status, ts.name AS to_status,
       c.transition_start_date, c.transition_change_date, c.time_in_status_seconds, c.author
  FROM changelogs c
  LEFT JOIN statuses fs ON fs.id = c.from_status_id
  LEFT JOIN statuses ts ON ts.id = c.to_status_id
 WHERE c.tenant_id = $1 AND c.work_item_id = $2
 ORDER BY c.transition_change_date, c.id;

-- name: work_item_prs
SELECT l.repository_full_name, l.pr_number, l.link_source,
       COALESCE(pr.html_url, l.pr_url) AS url, pr.id AS pull_request_id, pr.title, pr.state,
       pr.merged, pr.author_login, pr.created, pr.merged_at, pr.cycle_time_seconds
  FROM work_items_prs_links l
  LEFT JOIN pull_requests pr ON pr.id = l.pull_request_id
 WHERE l.tenant_id = $1 AND l.work_item_id = $2
 ORDER BY l.repository_full_name, l.pr_number, l.link_source;

-- name: ping
SELECT 1;

-- name: login_user
SELECT u.id, u.tenant_id, u.username, u.password_hash, u.active, t.active AS tenant_active
  FROM users u JOIN tenants t ON t.id = u.tenant_id
 WHERE lower(u.username) = lower($1);
