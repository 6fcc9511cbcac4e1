-- The JSON API's reads: jobs with their last run, and job statuses for WebSocket feeds.

-- name: tenant_exists
SELECT EXISTS (SELECT 1 FROM tenants WHERE id = $1);

-- name: jobs_of_tenant
SELECT j.id, j.tenant_id, j.name, j.job_type, j.status, j.active, j.next_run, j.last_sync_date,
       j.job_order, j.integration_id, i.name AS integration_name, i.provider,
       i.active AS integration_active,
       lr.id AS last_run_id, lr.trigger AS last_run_trigger, lr.outcome AS last_run_outcome,
       lr.started_at AS last_run_started_at, lr.finished_at AS last_run_finished_at,
       lr.error AS last_run_error, lr.alert AS last_run_alert
  FROM etl_jobs j
  JOIN integrations i ON i.id = j.integration_id
  LEFT JOIN LATERAL (SELECT id, trigger, outcome, started_at, finished_at, error, alert
                       FROM etl_job_runs r
                      WHERE r.job_id = j.id
                      ORDER BY r.started_at DESC, r.id DESC LIMIT 1) lr ON true
 WHERE j.tenant_id = $1
 ORDER BY j.job_order, j.id;

-- name: job
SELECT j.id, j.tenant_id, j.name, j.job_type, j.status, j.active, j.next_run, j.last_sync_date,
       j.job_order, j.integration_id, i.name AS integration_name, i.provider,
       i.active AS integration_active,
       lr.id AS last_run_id, lr.trigger AS last_run_trigger, lr.outcome AS last_run_outcome,
       lr.started_at AS last_run_started_at, lr.finished_at AS last_run_finished_at,
       lr.error AS last_run_error, lr.alert AS last_run_alert
  FROM etl_jobs j
  JOIN integrations i ON i.id = j.integration_id
  LEFT JOIN LATERAL (SELECT id, trigger, outcome, started_at, finished_at, error, alert
                       FROM etl_job_runs r
                      WHERE r.job_id = j.id
                      ORDER BY r.started_at DESC, r.id DESC LIMIT 1) lr ON true
 WHERE j.id = $1;

-- name: job_status
SELECT id, tenant_id, status FROM etl_jobs WHERE id = $1 AND tenant_id = $2;

-- name: tenant_job_statuses
SELECT id, tenant_id, status FROM etl_jobs WHERE tenant_id = $1 ORDER BY job_order, id;

-- name: statuses_for_resync
-- After the listener reconnects: every job a client watches, by tenant or by job.
SELECT id, tenant_id, status FROM etl_jobs
 WHERE tenant_id = ANY($1::bigint[]) OR id = ANY($2::bigint[])
 ORDER BY tenant_id, job_order, id;
