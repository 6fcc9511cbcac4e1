-- Re-transform rebuilds tables from stored pages without calling the source: it needs to
-- know which step stored each page.
ALTER TABLE raw_extraction_data ADD COLUMN step text;
CREATE INDEX raw_extraction_data_replay_idx ON raw_extraction_data (integration_id, step, id)
    WHERE status <> 'failed';
