-- 0009_checkpoints: extraction checkpoints in their own table, and lz4 for raw pages.
--
-- etl_run_checkpoints: one row per (run, key), the cursor an extraction saves after every
-- stored page so a redelivered message resumes there. It used to be a jsonb field of the
-- etl_job_runs row, which every ledger transaction locks: a checkpoint write then waited for
-- each transform completion in flight. Its own row is locked by nobody else. Checkpoints of
-- runs still in progress are carried over so they resume after the upgrade. The REST source
-- keeps its stream states in etl_job_runs.checkpoint (the next run reads the last one there).
--
-- raw_extraction_data.raw_payload: pages of a few MB each are TOASTed, and pglz compression
-- costs more server CPU than anything else done to a page; lz4 is several times faster at a
-- similar size. Servers built without lz4 keep pglz. Existing values stay as they are.

CREATE TABLE etl_run_checkpoints (
    run_id      bigint      NOT NULL REFERENCES etl_job_runs(id) ON DELETE CASCADE,
    key         text        NOT NULL,
    value       jsonb       NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, key)
);
COMMENT ON TABLE etl_run_checkpoints IS 'Extraction cursors per run and step, so an interrupted extraction resumes.';

INSERT INTO etl_run_checkpoints (run_id, key, value)
SELECT r.id, c.key, c.value
  FROM etl_job_runs r, jsonb_each(r.checkpoint) AS c (key, value)
 WHERE r.outcome = 'RUNNING';

DO $$
BEGIN
    EXECUTE 'ALTER TABLE raw_extraction_data ALTER COLUMN raw_payload SET COMPRESSION lz4';
EXCEPTION
    WHEN feature_not_supported OR invalid_parameter_value OR syntax_error THEN
        RAISE NOTICE 'lz4 is not available on this server; raw pages stay pglz-compressed';
END
$$;
