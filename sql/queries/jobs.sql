-- Jobs: listing, control actions and the scheduler's view.

-- name: list_for_tenant
SELECT j.id, j.tenant_id, j.integration_id, j.name, j.job_type, j.status, j.active, j.next_run,
       j.last_sync_date, j.job_order, i.name AS integration_name, i.provider,
       i.active AS integration_active,
       lr.id AS last_run_id, lr.outcome AS last_run_outcome, lr.started_at AS last_run_started_at,
       lr.finished_at AS last_run_finished_at
  FROM etl_jobs j
  JOIN integrations i ON i.id = j.integration_id
  LEFT JOIN LATERAL (SELECT id, outcome, started_at, finished_at FROM etl_job_runs r
                      WHERE r.job_id = j.id ORDER BY r.started_at DESC, r.id DESC LIMIT 1) lr ON true
 WHERE j.tenant_id = $1
 ORDER BY j.job_order, j.id;

-- name: get
-- integration_settings: some sources' steps depend on them (one REST step per stream).
SELECT j.id, j.tenant_id, j.integration_id, j.name, j.job_type, j.status, j.active, j.next_run,
       j.last_sync_date, j.job_order, i.name AS integration_name, i.provider,
       i.active AS integration_active, t.tier, i.settings AS integration_settings
  FROM etl_jobs j
  JOIN integrations i ON i.id = j.integration_id
  JOIN tenants t ON t.id = j.tenant_id
 WHERE j.id = $1;

-- name: runs_of_job
SELECT id, trigger, full_sync, outcome, started_at, finished_at,
       EXTRACT(EPOCH FROM (COALESCE(finished_at, now()) - started_at)) AS duration_seconds,
       records, api_calls, dead_letters, errors, peak_memory_bytes, error, alert
  FROM etl_job_runs
 WHERE job_id = $1
 ORDER BY started_at DESC, id DESC
 LIMIT $2 OFFSET $3;

-- name: get_run
SELECT id, tenant_id, job_id, trigger, full_sync, outcome, started_at, finished_at,
       EXTRACT(EPOCH FROM (COALESCE(finished_at, now()) - started_at)) AS duration_seconds,
       records, api_calls, dead_letters, errors, peak_memory_bytes, error, alert, current_step
  FROM etl_job_runs WHERE id = $1;

-- name: set_active
UPDATE etl_jobs SET active = $2, updated_at = now() WHERE id = $1 RETURNING id;

-- name: set_ready
UPDATE etl_jobs
   SET status = jsonb_set(status, '{overall}', '"READY"'), next_run = $2, updated_at = now()
 WHERE id = $1;

-- name: set_next_run
UPDATE etl_jobs SET next_run = $2, updated_at = now() WHERE id = $1;

-- name: active_tenants
SELECT id, name, tier FROM tenants WHERE active ORDER BY id;

-- name: tenant_jobs_for_scheduling
SELECT j.id, j.name, j.status ->> 'overall' AS overall, j.active, j.next_run, j.job_order,
       j.integration_id, i.active AS integration_active, i.provider
  FROM etl_jobs j JOIN integrations i ON i.id = j.integration_id
 WHERE j.tenant_id = $1
 ORDER BY j.job_order, j.id;

-- name: clear_next_run
UPDATE etl_jobs SET next_run = NULL, updated_at = now() WHERE id = $1;

-- name: set_overall
UPDATE etl_jobs SET status = jsonb_set(status, '{overall}', to_jsonb($2::text)), updated_at = now()
 WHERE id = $1
RETURNING tenant_id, status;
