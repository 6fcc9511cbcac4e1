-- Per-tenant notifications (failed runs, skipped jobs, stuck runs) and their webhook delivery.

-- name: insert
INSERT INTO notifications (tenant_id, job_id, run_id, kind, severity, message, details)
VALUES ($1, $2, $3, $4, $5, $6, $7)
RETURNING id;

-- name: list_for_tenant
SELECT n.id, n.job_id, j.name AS job_name, n.run_id, n.kind, n.severity, n.message, n.details,
       n.created_at, n.read_at, n.delivered_at
  FROM notifications n LEFT JOIN etl_jobs j ON j.id = n.job_id
 WHERE n.tenant_id = $1
 ORDER BY n.created_at DESC, n.id DESC
 LIMIT $2 OFFSET $3;

-- name: undelivered
-- SKIP LOCKED: several daemons may deliver; each notification goes to one of them.
SELECT n.id, n.kind, n.severity, n.message, n.details, n.job_id, n.run_id, t.name AS tenant,
       j.name AS job_name
  FROM notifications n
  JOIN tenants t ON t.id = n.tenant_id
  LEFT JOIN etl_jobs j ON j.id = n.job_id
 WHERE n.delivered_at IS NULL AND n.delivery_attempts < $1
   AND (n.delivery_attempts = 0 OR n.created_at < now() - make_interval(secs => 30 * n.delivery_attempts))
 ORDER BY n.id
 LIMIT 20
   FOR UPDATE OF n SKIP LOCKED;

-- name: delivered
UPDATE notifications SET delivered_at = now(), delivery_attempts = delivery_attempts + 1,
       delivery_error = NULL
 WHERE id = $1;

-- name: delivery_failed
UPDATE notifications SET delivery_attempts = delivery_attempts + 1, delivery_error = $2
 WHERE id = $1;
