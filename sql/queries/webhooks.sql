-- Incoming webhooks: the integration they are for, what they named, and the targeted runs that
-- fetch those items.

-- name: integration
SELECT i.id, i.tenant_id, i.name, i.provider, i.settings, i.webhook_secret, i.active
  FROM integrations i
 WHERE i.id = $1;

-- name: set_secret
UPDATE integrations SET webhook_secret = $2, updated_at = now() WHERE id = $1 RETURNING id;

-- name: record_event
INSERT INTO webhook_events (tenant_id, integration_id, provider, event, delivery_id, targets)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING id;

-- name: add_target
-- A target already pending for the integration only counts one more event.
INSERT INTO webhook_targets AS t (tenant_id, integration_id, target_key, target)
VALUES ($1, $2, $3, $4)
ON CONFLICT (integration_id, target_key) WHERE dispatched_at IS NULL DO UPDATE
   SET events = t.events + 1, last_seen_at = now(), target = EXCLUDED.target
RETURNING id;

-- name: pending_groups
-- Integrations with pending targets: seconds since the newest event (the burst is over when
-- it is quiet long enough) and since the oldest (so a steady stream still gets runs).
SELECT t.integration_id, i.provider, i.settings,
       EXTRACT(EPOCH FROM now() - max(t.last_seen_at))::float8 AS quiet_seconds,
       EXTRACT(EPOCH FROM now() - min(t.first_seen_at))::float8 AS waiting_seconds
  FROM webhook_targets t
  JOIN integrations i ON i.id = t.integration_id
 WHERE t.dispatched_at IS NULL
 GROUP BY t.integration_id, i.id
 ORDER BY min(t.first_seen_at);

-- name: claim_targets
-- Locked until the run that takes them is recorded; another dispatcher skips them meanwhile.
SELECT id, target FROM webhook_targets
 WHERE integration_id = $1 AND dispatched_at IS NULL
 ORDER BY first_seen_at, id
 LIMIT $2
   FOR UPDATE SKIP LOCKED;

-- name: mark_dispatched
UPDATE webhook_targets SET dispatched_at = now(), run_id = $2, outcome = $3
 WHERE id = ANY($1::bigint[]);

-- name: job_of_integration
-- The integration's job (the first by order when there are several).
SELECT j.id FROM etl_jobs j WHERE j.integration_id = $1 ORDER BY j.job_order, j.id LIMIT 1;

-- name: prune
-- History kept for a week: handled targets, targets no source could fetch in that time
-- (polling has long carried their changes), and recorded events.
WITH targets AS (
    DELETE FROM webhook_targets
     WHERE COALESCE(dispatched_at, last_seen_at) < now() - interval '7 days'
)
DELETE FROM webhook_events WHERE received_at < now() - interval '7 days';
