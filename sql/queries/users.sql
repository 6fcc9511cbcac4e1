-- Users of the admin UI.

-- name: insert_user
INSERT INTO users (tenant_id, username, display_name, password_hash, role)
VALUES ($1, $2, $3, $4, $5)
RETURNING id;

-- name: set_password
UPDATE users SET password_hash = $2, active = true WHERE lower(username) = lower($1)
RETURNING id;

-- name: by_username
SELECT u.id, u.tenant_id, u.username, u.display_name, u.password_hash, u.role, u.active,
       t.name AS tenant
  FROM users u JOIN tenants t ON t.id = u.tenant_id
 WHERE lower(u.username) = lower($1);

-- name: list_users
SELECT u.id, t.name AS tenant, u.username, u.role, u.active, u.last_login_at
  FROM users u JOIN tenants t ON t.id = u.tenant_id
 WHERE ($1::text IS NULL OR t.name = $1)
 ORDER BY t.name, u.username;
