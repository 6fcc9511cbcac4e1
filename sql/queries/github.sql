-- GitHub source: extraction checkpoints and ETags, and the idempotent loads of each transform.
-- Row sets travel as one JSON array parameter read by json_to_recordset (one pass over the
-- text; jsonb_to_recordset first builds a jsonb value, a third more server CPU), so a page is
-- one statement per table whatever its size.

-- name: get_etags
SELECT url, etag, meta FROM github_etags WHERE integration_id = $1 AND url = ANY($2::text[]);

-- name: put_etags
INSERT INTO github_etags AS e (integration_id, url, etag, meta)
SELECT DISTINCT ON (r.url) $1, r.url, r.etag, COALESCE(r.meta, '{}')
  FROM json_to_recordset($2::json) AS r (url text, etag text, meta jsonb)
ON CONFLICT (integration_id, url) DO UPDATE
   SET etag = EXCLUDED.etag, meta = EXCLUDED.meta, updated_at = now();

-- name: repositories
SELECT external_id, full_name FROM repositories
 WHERE tenant_id = $1 AND integration_id = $2
 ORDER BY lower(full_name);

-- name: upsert_repositories
-- A rename keeps the id and changes full_name. An answer older than the stored one is ignored.
INSERT INTO repositories AS r (tenant_id, integration_id, external_id, full_name, owner, name,
                               default_branch, private, archived, html_url, description,
                               created, updated, pushed_at)
SELECT $1, $2, x.external_id, x.full_name, x.owner, x.name, x.default_branch,
       COALESCE(x.private, false), COALESCE(x.archived, false), x.html_url, x.description,
       x.created, x.updated, x.pushed_at
  FROM json_to_recordset($3::json) AS x (external_id text, full_name text, owner text,
                                         name text, default_branch text, private boolean,
                                         archived boolean, html_url text, description text,
                                         created timestamptz, updated timestamptz,
                                         pushed_at timestamptz)
ON CONFLICT (tenant_id, integration_id, external_id) DO UPDATE
   SET full_name = EXCLUDED.full_name, owner = EXCLUDED.owner, name = EXCLUDED.name,
       default_branch = EXCLUDED.default_branch, private = EXCLUDED.private,
       archived = EXCLUDED.archived, html_url = EXCLUDED.html_url,
       description = EXCLUDED.description, created = EXCLUDED.created,
       updated = EXCLUDED.updated, pushed_at = EXCLUDED.pushed_at, updated_at = now()
 WHERE (r.updated IS NULL OR EXCLUDED.updated IS NULL OR r.updated <= EXCLUDED.updated)
   AND (r.full_name, r.owner, r.name, r.default_branch, r.private, r.archived, r.html_url,
        r.description, r.created, r.updated, r.pushed_at)
       IS DISTINCT FROM (EXCLUDED.full_name, EXCLUDED.owner, EXCLUDED.name,
                         EXCLUDED.default_branch, EXCLUDED.private, EXCLUDED.archived,
                         EXCLUDED.html_url, EXCLUDED.description, EXCLUDED.created,
                         EXCLUDED.updated, EXCLUDED.pushed_at)
RETURNING r.id;

-- name: repository_id
SELECT id FROM repositories WHERE tenant_id = $1 AND integration_id = $2 AND external_id = $3;

-- name: ensure_pulls
-- A row for each (external_id, number) of a page, so pages of one pull request can load in
-- any order; $4 comes sorted by number, the order every transform locks rows in.
INSERT INTO pull_requests (tenant_id, integration_id, repository_id, external_id, number)
SELECT $1, $2, $3, r.external_id, r.number
  FROM json_to_recordset($4::json) AS r (external_id text, number integer)
 ORDER BY r.number
ON CONFLICT DO NOTHING;

-- name: lock_pulls
SELECT id, number, external_id, html_url, source_updated_at, details_updated_at
  FROM pull_requests
 WHERE repository_id = $1 AND number = ANY($2::integer[])
 ORDER BY number
   FOR UPDATE;

-- name: update_pulls
-- Sizes and counts only GET /pulls/{n} tells are kept when a row does not carry them (NULL).
UPDATE pull_requests AS p
   SET title = r.title, body = r.body, state = r.state, draft = COALESCE(r.draft, false),
       merged = COALESCE(r.merged, false), author_login = r.author_login,
       head_ref = r.head_ref, base_ref = r.base_ref, head_sha = r.head_sha,
       additions = COALESCE(r.additions, p.additions),
       deletions = COALESCE(r.deletions, p.deletions),
       changed_files = COALESCE(r.changed_files, p.changed_files),
       commits_count = COALESCE(r.commits_count, p.commits_count),
       created = r.created, updated = r.updated, closed_at = r.closed_at,
       merged_at = r.merged_at, html_url = r.html_url, source_updated_at = r.updated,
       deleted_at = NULL, last_updated_at = now()
  FROM json_to_recordset($3::json) AS r (number integer, title text, body text, state text,
                                         draft boolean, merged boolean, author_login text,
                                         head_ref text, base_ref text, head_sha text,
                                         additions integer, deletions integer,
                                         changed_files integer, commits_count integer,
                                         created timestamptz, updated timestamptz,
                                         closed_at timestamptz, merged_at timestamptz,
                                         html_url text)
 WHERE p.tenant_id = $1 AND p.repository_id = $2 AND p.number = r.number
   AND (p.source_updated_at IS NULL OR p.source_updated_at <= r.updated)
   AND (p.title, p.body, p.state, p.draft, p.merged, p.author_login, p.head_ref, p.base_ref,
        p.head_sha, p.additions, p.deletions, p.changed_files, p.commits_count, p.created,
        p.updated, p.closed_at, p.merged_at, p.html_url, p.source_updated_at, p.deleted_at)
       IS DISTINCT FROM (r.title, r.body, r.state, COALESCE(r.draft, false),
                         COALESCE(r.merged, false), r.author_login, r.head_ref, r.base_ref,
                         r.head_sha, COALESCE(r.additions, p.additions),
                         COALESCE(r.deletions, p.deletions),
                         COALESCE(r.changed_files, p.changed_files),
                         COALESCE(r.commits_count, p.commits_count), r.created, r.updated,
                         r.closed_at, r.merged_at, r.html_url, r.updated, NULL::timestamptz)
RETURNING p.id, p.number;

-- name: replace_commits
-- $2: commit rows; $3: pull requests whose every commit is in $2: their others are gone
-- (a force push).
WITH incoming AS (
    SELECT * FROM json_to_recordset($2::json) AS r (pull_request_id bigint, sha text,
                                                    message text, author_name text,
                                                    author_email text, author_login text,
                                                    authored_at timestamptz,
                                                    committed_at timestamptz)
), stale AS (
    DELETE FROM pr_commits c
     WHERE c.pull_request_id = ANY($3::bigint[])
       AND NOT EXISTS (SELECT 1 FROM incoming i
                        WHERE i.pull_request_id = c.pull_request_id AND i.sha = c.sha)
)
INSERT INTO pr_commits AS c (tenant_id, pull_request_id, sha, message, author_name,
                             author_email, author_login, authored_at, committed_at)
SELECT $1, pull_request_id, sha, message, author_name, author_email, author_login,
       authored_at, committed_at
  FROM incoming
ON CONFLICT (pull_request_id, sha) DO UPDATE
   SET message = EXCLUDED.message, author_name = EXCLUDED.author_name,
       author_email = EXCLUDED.author_email, author_login = EXCLUDED.author_login,
       authored_at = EXCLUDED.authored_at, committed_at = EXCLUDED.committed_at
 WHERE (c.message, c.author_name, c.author_email, c.author_login, c.authored_at,
        c.committed_at)
       IS DISTINCT FROM (EXCLUDED.message, EXCLUDED.author_name, EXCLUDED.author_email,
                         EXCLUDED.author_login, EXCLUDED.authored_at, EXCLUDED.committed_at);

-- name: replace_reviews
-- $2: review rows; $3: pull requests whose every review is in $2.
WITH incoming AS (
    SELECT * FROM json_to_recordset($2::json) AS r (pull_request_id bigint, external_id text,
                                                    author_login text, state text,
                                                    body text, submitted_at timestamptz)
), stale AS (
    DELETE FROM pr_reviews v
     WHERE v.pull_request_id = ANY($3::bigint[])
       AND NOT EXISTS (SELECT 1 FROM incoming i
                        WHERE i.pull_request_id = v.pull_request_id
                          AND i.external_id = v.external_id)
)
INSERT INTO pr_reviews AS v (tenant_id, pull_request_id, external_id, author_login, state,
                             body, submitted_at)
SELECT $1, pull_request_id, external_id, author_login, state, body, submitted_at
  FROM incoming
ON CONFLICT (pull_request_id, external_id) DO UPDATE
   SET author_login = EXCLUDED.author_login, state = EXCLUDED.state, body = EXCLUDED.body,
       submitted_at = EXCLUDED.submitted_at
 WHERE (v.author_login, v.state, v.body, v.submitted_at)
       IS DISTINCT FROM (EXCLUDED.author_login, EXCLUDED.state, EXCLUDED.body,
                         EXCLUDED.submitted_at);

-- name: set_details
-- Per pull request of a details page: the update time its lists were read at, and the commit
-- count and truncation when the page tells them (NULL keeps the stored value).
UPDATE pull_requests AS p
   SET details_updated_at = GREATEST(p.details_updated_at, r.updated),
       commits_count = COALESCE(r.commits_count, p.commits_count),
       truncated = COALESCE(r.truncated, p.truncated),
       last_updated_at = now()
  FROM json_to_recordset($1::json) AS r (id bigint, updated timestamptz,
                                         commits_count integer, truncated jsonb)
 WHERE p.id = r.id
   AND (p.details_updated_at, p.commits_count, p.truncated)
       IS DISTINCT FROM (GREATEST(p.details_updated_at, r.updated),
                         COALESCE(r.commits_count, p.commits_count),
                         COALESCE(r.truncated, p.truncated));

-- name: upsert_comments
-- $2: repository id; $3: kind ('review' or 'issue'); $4: comments with the number of the
-- pull request (or issue) they belong to. Comments on plain issues, or on pull requests not
-- loaded, find no row and are left out. An older copy never replaces a newer one.
WITH incoming AS (
    SELECT p.id AS pull_request_id, r.external_id, r.author_login, r.body, r.path, r.created,
           r.updated
      FROM json_to_recordset($4::json) AS r (external_id text, number integer,
                                             author_login text, body text, path text,
                                             created timestamptz, updated timestamptz)
      JOIN pull_requests p ON p.repository_id = $2 AND p.number = r.number
)
INSERT INTO pr_comments AS c (tenant_id, pull_request_id, external_id, kind, author_login, body,
                              path, created, updated)
SELECT $1, pull_request_id, external_id, $3, author_login, body, path, created, updated
  FROM incoming
ON CONFLICT (tenant_id, kind, external_id) DO UPDATE
   SET pull_request_id = EXCLUDED.pull_request_id, author_login = EXCLUDED.author_login,
       body = EXCLUDED.body, path = EXCLUDED.path, created = EXCLUDED.created,
       updated = EXCLUDED.updated
 WHERE (c.updated IS NULL OR EXCLUDED.updated IS NULL OR c.updated <= EXCLUDED.updated)
   AND (c.pull_request_id, c.author_login, c.body, c.path, c.created, c.updated)
       IS DISTINCT FROM (EXCLUDED.pull_request_id, EXCLUDED.author_login, EXCLUDED.body,
                         EXCLUDED.path, EXCLUDED.created, EXCLUDED.updated)
RETURNING c.pull_request_id;

-- name: refresh_pull_metrics
-- Timing columns from what is loaded: coding = first commit -> opened; pickup = opened ->
-- first review or comment by someone else (bots left out); review = first such review ->
-- merged; cycle = opened -> merged. Negative spans (a clock off) count as zero.
WITH facts AS (
    SELECT p.id,
           (SELECT min(c.authored_at) FROM pr_commits c WHERE c.pull_request_id = p.id)
               AS first_commit,
           (SELECT min(v.submitted_at) FROM pr_reviews v
             WHERE v.pull_request_id = p.id AND v.state IS DISTINCT FROM 'PENDING'
               AND v.author_login IS DISTINCT FROM p.author_login
               AND COALESCE(v.author_login, '') NOT LIKE '%[bot]') AS first_review,
           (SELECT min(m.created) FROM pr_comments m
             WHERE m.pull_request_id = p.id
               AND m.author_login IS DISTINCT FROM p.author_login
               AND COALESCE(m.author_login, '') NOT LIKE '%[bot]') AS first_comment,
           (SELECT count(*) FROM pr_comments m
             WHERE m.pull_request_id = p.id AND m.kind = 'issue') AS issue_comments,
           (SELECT count(*) FROM pr_comments m
             WHERE m.pull_request_id = p.id AND m.kind = 'review') AS review_comments
      FROM pull_requests p
     WHERE p.id = ANY($1::bigint[])
), derived AS (
    SELECT f.id, f.first_commit, f.first_review,
           LEAST(f.first_review, f.first_comment) AS first_response,
           f.issue_comments::integer AS issue_comments,
           f.review_comments::integer AS review_comments
      FROM facts f
), spans AS (
    SELECT d.*,
           CASE WHEN d.first_commit IS NOT NULL AND p.created IS NOT NULL
                THEN GREATEST(0, EXTRACT(EPOCH FROM p.created - d.first_commit))::float8
           END AS coding,
           CASE WHEN d.first_response IS NOT NULL AND p.created IS NOT NULL
                THEN GREATEST(0, EXTRACT(EPOCH FROM d.first_response - p.created))::float8
           END AS pickup,
           CASE WHEN d.first_review IS NOT NULL AND p.merged_at IS NOT NULL
                THEN GREATEST(0, EXTRACT(EPOCH FROM p.merged_at - d.first_review))::float8
           END AS review,
           CASE WHEN p.merged_at IS NOT NULL AND p.created IS NOT NULL
                THEN GREATEST(0, EXTRACT(EPOCH FROM p.merged_at - p.created))::float8
           END AS cycle
      FROM derived d JOIN pull_requests p ON p.id = d.id
)
UPDATE pull_requests AS p
   SET first_commit_at = s.first_commit, first_review_at = s.first_review,
       first_response_at = s.first_response, coding_time_seconds = s.coding,
       pickup_time_seconds = s.pickup, review_time_seconds = s.review,
       cycle_time_seconds = s.cycle, comments_count = s.issue_comments,
       review_comments_count = s.review_comments, last_updated_at = now()
  FROM spans s
 WHERE p.id = s.id
   AND (p.first_commit_at, p.first_review_at, p.first_response_at, p.coding_time_seconds,
        p.pickup_time_seconds, p.review_time_seconds, p.cycle_time_seconds, p.comments_count,
        p.review_comments_count)
       IS DISTINCT FROM (s.first_commit, s.first_review, s.first_response, s.coding, s.pickup,
                         s.review, s.cycle, s.issue_comments, s.review_comments);

-- name: replace_pull_links
-- $2: pull requests whose links of the sources $3 are all in $4 (others of those sources go);
-- $4: (pull_request_id, repository, number, url, key, source) rows. A key naming no live work
-- item of the tenant makes no link.
WITH incoming AS (
    SELECT DISTINCT ON (w.id, r.pull_request_id, r.source)
           w.id AS work_item_id, r.pull_request_id, r.repository, r.number, r.url, r.source
      FROM json_to_recordset($4::json) AS r (pull_request_id bigint, repository text,
                                             number integer, url text, key text,
                                             source text)
      JOIN work_items w ON w.tenant_id = $1 AND w.key = r.key AND w.deleted_at IS NULL
), stale AS (
    DELETE FROM work_items_prs_links l
     WHERE l.tenant_id = $1 AND l.pull_request_id = ANY($2::bigint[])
       AND l.link_source = ANY($3::text[])
       AND NOT EXISTS (SELECT 1 FROM incoming n
                        WHERE n.work_item_id = l.work_item_id
                          AND n.pull_request_id = l.pull_request_id
                          AND n.source = l.link_source
                          AND n.repository = l.repository_full_name
                          AND n.number = l.pr_number)
)
INSERT INTO work_items_prs_links AS l (tenant_id, work_item_id, pull_request_id,
                                       repository_full_name, pr_number, pr_url, link_source)
SELECT $1, work_item_id, pull_request_id, repository, number, url, source
  FROM incoming
ON CONFLICT (tenant_id, work_item_id, repository_full_name, pr_number, link_source) DO UPDATE
   SET pull_request_id = EXCLUDED.pull_request_id,
       pr_url = COALESCE(EXCLUDED.pr_url, l.pr_url)
 WHERE (l.pull_request_id, l.pr_url)
       IS DISTINCT FROM (EXCLUDED.pull_request_id, COALESCE(EXCLUDED.pr_url, l.pr_url));

-- name: attach_links
-- Links that name these pull requests by repository and number (from Jira's development
-- status, or found before the pull request was loaded) point at their rows.
UPDATE work_items_prs_links AS l
   SET pull_request_id = p.id, pr_url = COALESCE(l.pr_url, p.html_url)
  FROM pull_requests p
  JOIN repositories r ON r.id = p.repository_id
 WHERE p.id = ANY($2::bigint[]) AND l.tenant_id = $1
   AND lower(l.repository_full_name) = lower(r.full_name) AND l.pr_number = p.number
   AND (l.pull_request_id IS DISTINCT FROM p.id OR (l.pr_url IS NULL AND p.html_url IS NOT NULL));
