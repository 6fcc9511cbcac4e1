-- 0006_vectors: lookups the embedding stage needs on the qdrant_vectors bridge table.
--
-- A delete request can name a record whose row is already gone; its bridge row is then
-- found by external id. The unique (tenant_id, table_name, record_id) key serves every
-- other lookup.

CREATE INDEX qdrant_vectors_tenant_id_table_name_external_id_idx
    ON qdrant_vectors (tenant_id, table_name, external_id);
