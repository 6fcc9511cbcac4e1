-- raw_extraction_data: API pages stored verbatim, handed to transform by id.

-- name: store_page
-- A redelivered extraction stores the same page again: (run, type, page_key) makes that
-- a no-op that still returns the existing row's id (and says it inserted nothing).
-- $6: the page's JSON text as UTF-8 bytes. $11/$12: the extraction's checkpoint key and
-- value after this page (NULL: none), saved by the same statement, so the cursor commits
-- with the page at no extra round trip.
WITH checkpoint AS (
    INSERT INTO etl_run_checkpoints (run_id, key, value, updated_at)
    SELECT $4, $11::text, $12::jsonb, now() WHERE $11::text IS NOT NULL
    ON CONFLICT (run_id, key) DO UPDATE
       SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at
), inserted AS (
    INSERT INTO raw_extraction_data (tenant_id, integration_id, job_id, run_id, type,
                                     raw_payload, payload_size, item_count, page_key, step)
    VALUES ($1, $2, $3, $4, $5, convert_from($6::bytea, 'UTF8'), $7, $8, $9, $10)
    ON CONFLICT (run_id, type, page_key) DO NOTHING
    RETURNING id
)
SELECT id, true AS inserted FROM inserted
UNION ALL
SELECT id, false FROM raw_extraction_data WHERE run_id = $4 AND type = $5 AND page_key = $9
LIMIT 1;

-- name: get_for_tenant
SELECT id, tenant_id, integration_id, job_id, run_id, type, raw_payload, status, created_at
  FROM raw_extraction_data
 WHERE id = $1 AND tenant_id = $2;

-- name: mark_processed
UPDATE raw_extraction_data SET status = 'processed', processed_at = now(), error = NULL
 WHERE id = $1;

-- name: mark_failed
UPDATE raw_extraction_data SET status = 'failed', error = $2 WHERE id = $1;

-- name: integration
SELECT id, tenant_id, name, provider, base_url, username, credentials, settings,
       allow_private_network, active
  FROM integrations WHERE id = $1;

-- name: page_id
-- After a concurrent duplicate stored the same page: its row is committed by now.
SELECT id FROM raw_extraction_data WHERE run_id = $1 AND type = $2 AND page_key = $3;

-- name: replay_page_ids
-- Pages a step stored for an integration, oldest first, for re-transform: idempotent
-- upserts that never let older data win make replaying them all end at the newest state.
SELECT id FROM raw_extraction_data
 WHERE integration_id = $1 AND step = $2 AND status <> 'failed' AND id > $3
 ORDER BY id
 LIMIT $4;
