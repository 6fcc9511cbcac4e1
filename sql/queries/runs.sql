-- Job runs, their work ledger (etl_run_items) and per-stage counters (etl_run_stages).

-- name: claim_run
-- Any unique clash (a run already RUNNING for the job, or this tick already claimed)
-- means someone else owns it: nothing is inserted and nothing is returned.
INSERT INTO etl_job_runs (tenant_id, job_id, trigger, full_sync, scheduled_for, steps, config,
                          last_progress_at, started_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
ON CONFLICT DO NOTHING
RETURNING id;

-- name: skipped_run
INSERT INTO etl_job_runs (tenant_id, job_id, trigger, outcome, scheduled_for, alert,
                          started_at, finished_at)
VALUES ($1, $2, $3, 'SKIPPED', $4, $5, $6, $6)
ON CONFLICT DO NOTHING
RETURNING id;

-- name: context
SELECT r.id AS run_id, r.tenant_id, r.job_id, r.outcome, r.current_step, r.steps, r.full_sync,
       r.config, r.started_at, r.trigger, r.watchdog_requeues,
       j.name AS job_name, j.job_type, j.last_sync_date, j.integration_id,
       i.provider, i.active AS integration_active, t.tier
  FROM etl_job_runs r
  JOIN etl_jobs j ON j.id = r.job_id
  JOIN integrations i ON i.id = j.integration_id
  JOIN tenants t ON t.id = r.tenant_id
 WHERE r.id = $1;

-- name: lock_run
-- NO KEY UPDATE serialises the ledger just as well (it conflicts with itself and with every
-- UPDATE of the row) yet lets inserts that reference the run (raw pages, items,
-- checkpoints) take their foreign-key share lock without waiting for a completion.
SELECT outcome, current_step FROM etl_job_runs WHERE id = $1 FOR NO KEY UPDATE;

-- name: insert_item
-- Records an item and counts it in its stage in one round trip. Returns the stage's count
-- of created items including this one, or no row when the item was recorded before.
WITH item AS (
    INSERT INTO etl_run_items (run_id, item_key, tenant_id, step, stage, queue, message)
    VALUES ($1, $2, $3, $4, $5, $6, $7)
    ON CONFLICT DO NOTHING
    RETURNING step, stage
)
INSERT INTO etl_run_stages AS s (run_id, step, stage, created, started_at)
SELECT $1, step, stage, 1, now() FROM item
ON CONFLICT (run_id, step, stage) DO UPDATE
   SET created = s.created + EXCLUDED.created
RETURNING created;

-- name: item_state
SELECT state FROM etl_run_items WHERE run_id = $1 AND item_key = $2;

-- name: mark_item
UPDATE etl_run_items
   SET state = $3, done_at = now(), error = $4
 WHERE run_id = $1 AND item_key = $2 AND state = 'pending'
RETURNING step, stage;

-- name: mark_done
-- A completion under the run's lock: the item done and the run's progress stamped (as in
-- progress: $3 API calls to add, $4 peak RSS, $5 now), or no row when the item was settled
-- before, which changes nothing.
WITH marked AS (
    UPDATE etl_run_items
       SET state = 'done', done_at = now(), error = NULL
     WHERE run_id = $1 AND item_key = $2 AND state = 'pending'
    RETURNING step, stage
), stamped AS (
    UPDATE etl_job_runs
       SET api_calls = api_calls + $3,
           last_progress_at = $5,
           peak_memory_bytes = GREATEST(COALESCE(peak_memory_bytes, 0), $4)
     WHERE id = $1 AND EXISTS (SELECT FROM marked)
)
SELECT step, stage FROM marked;

-- name: count_done
UPDATE etl_run_stages SET done = done + 1, records = records + $4
 WHERE run_id = $1 AND step = $2 AND stage = $3;

-- name: count_failed
UPDATE etl_run_stages SET failed = failed + 1
 WHERE run_id = $1 AND step = $2 AND stage = $3;

-- name: stage_counters
SELECT step, stage, created, done, failed, records FROM etl_run_stages WHERE run_id = $1;

-- name: progress
UPDATE etl_job_runs
   SET api_calls = api_calls + $2,
       last_progress_at = $4,
       peak_memory_bytes = GREATEST(COALESCE(peak_memory_bytes, 0), $3)
 WHERE id = $1;

-- name: set_current_step
UPDATE etl_job_runs SET current_step = $2, last_progress_at = $3 WHERE id = $1;

-- name: finish_run
UPDATE etl_job_runs
   SET outcome = $2,
       finished_at = now(),
       error = COALESCE($3, error),
       records = (SELECT jsonb_build_object(
                           'extraction', COALESCE(sum(records) FILTER (WHERE stage = 'extraction'), 0),
                           'transform', COALESCE(sum(records) FILTER (WHERE stage = 'transform'), 0),
                           'embedding', COALESCE(sum(records) FILTER (WHERE stage = 'embedding'), 0))
                    FROM etl_run_stages WHERE run_id = $1),
       dead_letters = (SELECT count(*) FROM dead_letters d WHERE d.run_id = $1),
       errors = (SELECT COALESCE(sum(failed), 0) FROM etl_run_stages WHERE run_id = $1)
 WHERE id = $1 AND outcome = 'RUNNING'
RETURNING started_at, job_id, tenant_id;

-- name: cancel_pending
UPDATE etl_run_items SET state = 'cancelled', done_at = now()
 WHERE run_id = $1 AND state = 'pending';

-- name: set_job_status_announce
-- $2: the status event's JSON text (notify_status's payload), whose "status" is stored; the
-- event is sent only when the status changed. The status is encoded once, in the event.
WITH incoming AS (
    SELECT ($2::text)::jsonb -> 'status' AS status
), changed AS (
    UPDATE etl_jobs AS j SET status = i.status, updated_at = now()
      FROM incoming i
     WHERE j.id = $1 AND j.status IS DISTINCT FROM i.status
    RETURNING j.id
)
SELECT pg_notify('etld_status', $2::text) FROM changed;

-- name: set_job_finished
-- A successful run moves last_sync_date to its start, so the next incremental run asks
-- the source for everything changed since this one began.
UPDATE etl_jobs
   SET status = $2,
       last_sync_date = CASE WHEN $3 THEN $4 ELSE last_sync_date END,
       updated_at = now()
 WHERE id = $1;

-- name: notify_status
SELECT pg_notify('etld_status', $1);

-- name: mark_published
UPDATE etl_run_items SET published_at = now()
 WHERE run_id = $1 AND item_key = ANY($2::text[]) AND published_at IS NULL;

-- name: unpublished_items
SELECT i.run_id, i.item_key, i.queue, i.message
  FROM etl_run_items i JOIN etl_job_runs r ON r.id = i.run_id
 WHERE i.state = 'pending' AND i.published_at IS NULL AND r.outcome = 'RUNNING'
   AND i.created_at < $1
 ORDER BY i.created_at
 LIMIT $2;

-- name: pending_items
SELECT item_key, queue, message FROM etl_run_items
 WHERE run_id = $1 AND state = 'pending'
 ORDER BY created_at;

-- name: stale_runs
-- A saved checkpoint is progress too; it lives in its own table so that saving it never
-- waits for the run row.
SELECT id, tenant_id, job_id, last_progress_at, watchdog_requeues
  FROM (SELECT r.id, r.tenant_id, r.job_id, r.watchdog_requeues, r.started_at,
               GREATEST(r.last_progress_at,
                        (SELECT max(c.updated_at) FROM etl_run_checkpoints c
                          WHERE c.run_id = r.id)) AS last_progress_at
          FROM etl_job_runs r
         WHERE r.outcome = 'RUNNING') AS running
 WHERE COALESCE(last_progress_at, started_at) < $1
 ORDER BY id;

-- name: watchdog_touch
UPDATE etl_job_runs
   SET watchdog_requeues = watchdog_requeues + 1, last_progress_at = $2
 WHERE id = $1 AND outcome = 'RUNNING';

-- name: running_run_of_job
SELECT id FROM etl_job_runs WHERE job_id = $1 AND outcome = 'RUNNING';

-- name: set_item_message
UPDATE etl_run_items SET message = $3 WHERE run_id = $1 AND item_key = $2;

-- name: get_checkpoint
SELECT value FROM etl_run_checkpoints WHERE run_id = $1 AND key = $2;

-- name: put_checkpoint
-- Its own row, not the run's: ledger transactions hold the run row, a checkpoint never waits.
INSERT INTO etl_run_checkpoints (run_id, key, value, updated_at)
VALUES ($1, $2, $3::jsonb, now())
ON CONFLICT (run_id, key) DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at;
