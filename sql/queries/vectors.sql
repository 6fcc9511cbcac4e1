-- Embedding stage and semantic search: what to embed, the qdrant_vectors bridge, hit details.

-- name: lock_records
-- Serialises work on the same records across consumers and daemons for one transaction, so
-- a vector and its bridge row always describe the same text. Sorted: no lock-order deadlock.
SELECT pg_advisory_xact_lock(hashtextextended(format('etld.vectors/%s/%s/%s', $1::bigint, $2::text, k), 0))
  FROM unnest($3::text[]) AS k
 ORDER BY k;

-- name: work_items
-- Work items of one integration by external id, with what their text is made of.
SELECT w.id, w.external_id, w.key, w.summary, w.description, w.labels, w.deleted_at,
       t.name AS type_name, s.name AS status_name, i.provider, i.name AS integration_name,
       w.team, w.custom_field_01, w.custom_field_02, w.custom_field_03, w.custom_field_04,
       w.custom_field_05, w.custom_field_06, w.custom_field_07, w.custom_field_08,
       w.custom_field_09, w.custom_field_10, w.custom_field_11, w.custom_field_12,
       w.custom_field_13, w.custom_field_14, w.custom_field_15, w.custom_field_16,
       w.custom_field_17, w.custom_field_18, w.custom_field_19, w.custom_field_20
  FROM work_items w
  JOIN integrations i ON i.id = w.integration_id
  LEFT JOIN wits t ON t.id = w.wit_id
  LEFT JOIN statuses s ON s.id = w.status_id
 WHERE w.tenant_id = $1 AND w.integration_id = $2 AND w.external_id = ANY($3::text[]);

-- name: pull_requests
SELECT p.id, p.external_id, p.title, p.body, p.head_ref, p.deleted_at, i.provider,
       i.name AS integration_name
  FROM pull_requests p
  JOIN integrations i ON i.id = p.integration_id
 WHERE p.tenant_id = $1 AND p.integration_id = $2 AND p.external_id = ANY($3::text[]);

-- name: field_names
-- Display names of the custom fields mapped into work_items columns (slot -> name).
SELECT v.slot, cf.name
  FROM custom_fields_mapping m
 CROSS JOIN LATERAL (VALUES
       ('team', m.team_field_id),
       ('custom_field_01', m.custom_field_01_id), ('custom_field_02', m.custom_field_02_id),
       ('custom_field_03', m.custom_field_03_id), ('custom_field_04', m.custom_field_04_id),
       ('custom_field_05', m.custom_field_05_id), ('custom_field_06', m.custom_field_06_id),
       ('custom_field_07', m.custom_field_07_id), ('custom_field_08', m.custom_field_08_id),
       ('custom_field_09', m.custom_field_09_id), ('custom_field_10', m.custom_field_10_id),
       ('custom_field_11', m.custom_field_11_id), ('custom_field_12', m.custom_field_12_id),
       ('custom_field_13', m.custom_field_13_id), ('custom_field_14', m.custom_field_14_id),
       ('custom_field_15', m.custom_field_15_id), ('custom_field_16', m.custom_field_16_id),
       ('custom_field_17', m.custom_field_17_id), ('custom_field_18', m.custom_field_18_id),
       ('custom_field_19', m.custom_field_19_id), ('custom_field_20', m.custom_field_20_id)
       ) AS v (slot, field_id)
  JOIN custom_fields cf ON cf.id = v.field_id
 WHERE m.tenant_id = $1 AND m.integration_id = $2 AND m.active;

-- name: bridge_rows
SELECT record_id, collection_name, point_id, model, variant, text_hash
  FROM qdrant_vectors
 WHERE tenant_id = $1 AND table_name = $2 AND record_id = ANY($3::bigint[]);

-- name: orphan_bridge_rows
-- Bridge rows of records whose row no longer exists, found by external id ($2 names the
-- table; only the allow-listed tables are ever passed).
SELECT q.record_id, q.collection_name, q.point_id, q.model, q.variant, q.text_hash
  FROM qdrant_vectors q
 WHERE q.tenant_id = $1 AND q.table_name = $2 AND q.external_id = ANY($3::text[])
   AND NOT EXISTS (SELECT 1 FROM work_items w WHERE $2 = 'work_items' AND w.id = q.record_id)
   AND NOT EXISTS (SELECT 1 FROM pull_requests p WHERE $2 = 'pull_requests' AND p.id = q.record_id);

-- name: upsert_bridge
-- $3: JSON array of rows (record_id, external_id, source_type, collection_name, point_id,
-- model, variant, text_hash).
INSERT INTO qdrant_vectors AS q (tenant_id, table_name, record_id, external_id, source_type,
                                 collection_name, point_id, model, variant, text_hash)
SELECT $1, $2, r.record_id, r.external_id, r.source_type, r.collection_name, r.point_id,
       r.model, r.variant, r.text_hash
  FROM json_to_recordset($3::json) AS r (record_id bigint, external_id text,
                                         source_type text, collection_name text,
                                         point_id uuid, model text, variant text,
                                         text_hash text)
ON CONFLICT (tenant_id, table_name, record_id) DO UPDATE
   SET external_id = EXCLUDED.external_id, source_type = EXCLUDED.source_type,
       collection_name = EXCLUDED.collection_name, point_id = EXCLUDED.point_id,
       model = EXCLUDED.model, variant = EXCLUDED.variant, text_hash = EXCLUDED.text_hash,
       updated_at = now();

-- name: delete_bridge
DELETE FROM qdrant_vectors
 WHERE tenant_id = $1 AND table_name = $2 AND record_id = ANY($3::bigint[]);

-- name: count_bridge
SELECT count(*) FROM qdrant_vectors WHERE tenant_id = $1;

-- name: hit_work_items
-- Details of search hits, for the tenant only and never of a deleted item.
SELECT w.id, w.external_id, w.key, w.summary AS title, t.name AS item_type,
       CASE WHEN i.provider = 'jira' AND i.base_url IS NOT NULL AND i.base_url <> ''
            THEN rtrim(i.base_url, '/') || '/browse/' || w.key END AS url
  FROM work_items w
  JOIN integrations i ON i.id = w.integration_id
  LEFT JOIN wits t ON t.id = w.wit_id
 WHERE w.tenant_id = $1 AND w.id = ANY($2::bigint[]) AND w.deleted_at IS NULL;

-- name: hit_pull_requests
SELECT p.id, p.external_id, r.full_name || '#' || p.number AS key, p.title,
       'Pull request' AS item_type, p.html_url AS url
  FROM pull_requests p
  JOIN repositories r ON r.id = p.repository_id
 WHERE p.tenant_id = $1 AND p.id = ANY($2::bigint[]) AND p.deleted_at IS NULL;
