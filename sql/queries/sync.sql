-- `etld sync`: find an integration's job by names, follow its run, summarise what it left.

-- name: tenant_by_name
SELECT id, name, active FROM tenants WHERE name = $1;

-- name: tenant_names
SELECT name FROM tenants ORDER BY name;

-- name: integration_of_tenant
-- The integration and its job: the one `etld run` seeds carries the integration's name,
-- one made in the admin UI may not, so the first job of the integration is taken.
SELECT i.id AS integration_id, i.name, i.provider, i.active AS integration_active,
       i.base_url, j.id AS job_id
  FROM integrations i
  LEFT JOIN LATERAL (SELECT id FROM etl_jobs
                      WHERE integration_id = i.id
                      ORDER BY (name = i.name) DESC, job_order, id
                      LIMIT 1) j ON true
 WHERE i.tenant_id = $1 AND i.name = $2;

-- name: integration_names
SELECT name FROM integrations WHERE tenant_id = $1 ORDER BY name;

-- name: run
SELECT id, job_id, trigger, full_sync, outcome, error, alert, records, api_calls, dead_letters,
       errors, peak_memory_bytes, started_at, finished_at,
       EXTRACT(EPOCH FROM (COALESCE(finished_at, now()) - started_at))::float8 AS duration_seconds
  FROM etl_job_runs
 WHERE id = $1;

-- name: run_stages
SELECT step, stage, created, done, failed, records
  FROM etl_run_stages
 WHERE run_id = $1;

-- name: run_pages
SELECT count(*) AS pages, COALESCE(sum(payload_size), 0)::bigint AS bytes
  FROM raw_extraction_data
 WHERE run_id = $1;

-- name: run_dead_letters
SELECT id, queue, stage, reason FROM dead_letters WHERE run_id = $1 ORDER BY id;

-- name: table_counts
-- Rows an integration holds, table by table, whatever its provider. Link tables without an
-- integration column are counted through the rows they link.
SELECT 'projects' AS table_name, count(*) AS total, 0::bigint AS deleted
  FROM projects WHERE integration_id = $1
UNION ALL
SELECT 'wits', count(*), 0 FROM wits WHERE integration_id = $1
UNION ALL
SELECT 'projects_wits', count(*), 0
  FROM projects_wits x JOIN projects p ON p.id = x.project_id WHERE p.integration_id = $1
UNION ALL
SELECT 'statuses', count(*), 0 FROM statuses WHERE integration_id = $1
UNION ALL
SELECT 'status_mappings', count(*), 0 FROM status_mappings WHERE integration_id = $1
UNION ALL
SELECT 'projects_statuses', count(*), 0
  FROM projects_statuses x JOIN projects p ON p.id = x.project_id WHERE p.integration_id = $1
UNION ALL
SELECT 'custom_fields', count(*), 0 FROM custom_fields WHERE integration_id = $1
UNION ALL
SELECT 'work_items', count(*), count(*) FILTER (WHERE deleted_at IS NOT NULL)
  FROM work_items WHERE integration_id = $1
UNION ALL
SELECT 'changelogs', count(*), 0 FROM changelogs WHERE integration_id = $1
UNION ALL
SELECT 'work_items_prs_links', count(*), 0
  FROM work_items_prs_links x JOIN work_items w ON w.id = x.work_item_id
 WHERE w.integration_id = $1
UNION ALL
SELECT 'repositories', count(*), 0 FROM repositories WHERE integration_id = $1
UNION ALL
SELECT 'pull_requests', count(*), 0 FROM pull_requests WHERE integration_id = $1
UNION ALL
SELECT 'pr_commits', count(*), 0
  FROM pr_commits x JOIN pull_requests p ON p.id = x.pull_request_id WHERE p.integration_id = $1
UNION ALL
SELECT 'pr_reviews', count(*), 0
  FROM pr_reviews x JOIN pull_requests p ON p.id = x.pull_request_id WHERE p.integration_id = $1
UNION ALL
SELECT 'pr_comments', count(*), 0
  FROM pr_comments x JOIN pull_requests p ON p.id = x.pull_request_id WHERE p.integration_id = $1
UNION ALL
SELECT 'raw_extraction_data', count(*), 0 FROM raw_extraction_data WHERE integration_id = $1;

-- name: run_progress
-- The run's outcome with its job's status JSON: what the progress lines are made of.
SELECT r.outcome, j.status
  FROM etl_job_runs r JOIN etl_jobs j ON j.id = r.job_id
 WHERE r.id = $1;
