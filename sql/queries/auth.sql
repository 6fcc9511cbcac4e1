-- API tokens: resolving a bearer token to its tenant and role, and the tokens CLI.

-- name: token_principal
-- last_used_at is written at most once a minute per token, so reading the API
-- does not turn every request into a row update.
WITH hit AS (
    SELECT a.id, a.tenant_id, a.name, a.role, a.last_used_at
      FROM api_tokens a JOIN tenants t ON t.id = a.tenant_id
     WHERE a.token_hash = $1 AND a.revoked_at IS NULL AND t.active
), touched AS (
    UPDATE api_tokens SET last_used_at = now()
     WHERE id IN (SELECT id FROM hit
                   WHERE last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
)
SELECT id, tenant_id, name, role FROM hit;

-- name: insert_token
INSERT INTO api_tokens (tenant_id, name, token_hash, role)
VALUES ($1, $2, $3, $4)
RETURNING id;

-- name: list_tokens
SELECT a.id, t.name AS tenant, a.name, a.role, a.created_at, a.last_used_at, a.revoked_at
  FROM api_tokens a JOIN tenants t ON t.id = a.tenant_id
 WHERE ($1::text IS NULL OR t.name = $1)
 ORDER BY t.name, a.id;

-- name: revoke_token
-- Revoking twice keeps the first revocation time.
UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, now())
 WHERE id = $1
RETURNING id, name, revoked_at;
