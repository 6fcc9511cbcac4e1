-- Declarative seeding from etld.toml: tenants, integrations and one job per integration.

-- name: upsert_tenant
INSERT INTO tenants (name, tier, active)
VALUES ($1, $2, $3)
ON CONFLICT (name) DO UPDATE
   SET tier = EXCLUDED.tier, active = EXCLUDED.active, updated_at = now()
 WHERE (tenants.tier, tenants.active) IS DISTINCT FROM (EXCLUDED.tier, EXCLUDED.active)
RETURNING id;

-- name: tenant_id_by_name
SELECT id FROM tenants WHERE name = $1;

-- name: upsert_integration
INSERT INTO integrations (tenant_id, name, provider, base_url, username, settings,
                          allow_private_network, active)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (tenant_id, name) DO UPDATE
   SET provider = EXCLUDED.provider,
       base_url = EXCLUDED.base_url,
       username = EXCLUDED.username,
       settings = EXCLUDED.settings,
       allow_private_network = EXCLUDED.allow_private_network,
       active = EXCLUDED.active,
       updated_at = now()
RETURNING id;

-- name: ensure_job
-- A job per integration; an existing job keeps its status, schedule and active flag
-- (those belong to the operator, not to the file).
INSERT INTO etl_jobs (tenant_id, integration_id, name, job_type, job_order, status)
VALUES ($1, $2, $3, $4, $5, '{"overall": "READY", "steps": {}}')
ON CONFLICT (tenant_id, name) DO UPDATE SET job_order = EXCLUDED.job_order
RETURNING id;

-- name: list_tenants
SELECT t.id, t.name, t.tier, t.active,
       (SELECT count(*) FROM integrations i WHERE i.tenant_id = t.id) AS integrations,
       (SELECT count(*) FROM users u WHERE u.tenant_id = t.id) AS users
  FROM tenants t
 ORDER BY t.name;

-- name: list_integrations
SELECT i.id, t.name AS tenant, i.name, i.provider, i.base_url, i.active,
       i.allow_private_network, i.credentials_hint
  FROM integrations i JOIN tenants t ON t.id = i.tenant_id
 WHERE ($1::text IS NULL OR t.name = $1)
 ORDER BY t.name, i.name;
