-- The queues and dead-letters JSON API (etld/web/api_queues.py). A NULL tenant means
-- "every tenant" (the internal service key); a tenant's own calls always pass its id.

-- name: dead_letters
-- Listing rows without body, headers and traceback: those are for the detail view.
SELECT id, tenant_id, job_id, run_id, queue, routing_key, stage, message_type, reason, error,
       attempts, status, requeue_count, created_at, requeued_at
  FROM dead_letters
 WHERE ($1::bigint IS NULL OR tenant_id = $1)
   AND ($2::text IS NULL OR queue = $2)
   AND ($3::text IS NULL OR status = $3)
 ORDER BY id DESC
 LIMIT $4 OFFSET $5;

-- name: dead_counts
-- Dead letters waiting for an operator per queue, within the caller's scope.
SELECT queue, count(*) AS dead
  FROM dead_letters
 WHERE status = 'dead'
   AND ($1::bigint IS NULL OR tenant_id = $1)
 GROUP BY queue;

-- name: owned_ids
-- Which of the given ids exist within the scope: a selection never reaches other tenants.
SELECT id
  FROM dead_letters
 WHERE id = ANY($1::bigint[])
   AND ($2::bigint IS NULL OR tenant_id = $2)
 ORDER BY id;

-- name: purge_ids
UPDATE dead_letters
   SET status = 'purged'
 WHERE id = ANY($1::bigint[])
   AND status = 'dead'
   AND ($2::bigint IS NULL OR tenant_id = $2)
RETURNING id;
