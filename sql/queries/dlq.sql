-- Dead letters: the runner's record of every message it gave up on, and the
-- operator's tools to list, requeue and purge them (etld/dlq.py).

-- name: insert
-- The tenant is looked up rather than trusted: a malformed message may name a tenant
-- that does not exist, and its dead letter must still be stored.
INSERT INTO dead_letters (tenant_id, job_id, run_id, queue, routing_key, stage, message_type,
                          reason, error, traceback, attempts, headers, body)
VALUES ((SELECT id FROM tenants WHERE id = $1), $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
RETURNING id;

-- name: list
SELECT id, tenant_id, job_id, run_id, queue, routing_key, stage, message_type, reason, error,
       traceback, attempts, headers, body, status, requeue_count, created_at, requeued_at
  FROM dead_letters
 WHERE ($1::bigint IS NULL OR tenant_id = $1)
   AND ($2::text IS NULL OR queue = $2)
   AND ($3::text IS NULL OR status = $3)
   AND ($4::bigint IS NULL OR id < $4)
 ORDER BY id DESC
 LIMIT $5;

-- name: get
SELECT id, tenant_id, job_id, run_id, queue, routing_key, stage, message_type, reason, error,
       traceback, attempts, headers, body, status, requeue_count, created_at, requeued_at
  FROM dead_letters
 WHERE id = $1;

-- name: lock_by_ids
-- Rows another requeue holds are skipped, so two operators never publish one twice.
SELECT id, tenant_id, job_id, run_id, queue, routing_key, stage, message_type, reason, error,
       traceback, attempts, headers, body, status, requeue_count, created_at, requeued_at
  FROM dead_letters
 WHERE id = ANY($1::bigint[]) AND status = 'dead'
 ORDER BY id
   FOR UPDATE SKIP LOCKED;

-- name: lock_batch
SELECT id, tenant_id, job_id, run_id, queue, routing_key, stage, message_type, reason, error,
       traceback, attempts, headers, body, status, requeue_count, created_at, requeued_at
  FROM dead_letters
 WHERE status = 'dead'
   AND ($1::bigint IS NULL OR tenant_id = $1)
   AND ($2::text IS NULL OR queue = $2)
   AND id > $3
 ORDER BY id
 LIMIT $4
   FOR UPDATE SKIP LOCKED;

-- name: mark_requeued
UPDATE dead_letters
   SET status = 'requeued', requeue_count = requeue_count + 1, requeued_at = now()
 WHERE id = ANY($1::bigint[]);

-- name: purge
UPDATE dead_letters
   SET status = 'purged'
 WHERE status = 'dead'
   AND ($1::bigint IS NULL OR tenant_id = $1)
   AND ($2::text IS NULL OR queue = $2);

-- name: counts
-- Dead letters waiting for an operator, per queue (queue health, the web dashboard).
SELECT queue, count(*) AS dead
  FROM dead_letters
 WHERE status = 'dead'
 GROUP BY queue
 ORDER BY queue;

-- name: tenant_by_name
SELECT id FROM tenants WHERE name = $1;
