-- 0004_jira: what the Jira source needs beyond the initial schema.
--
-- source_hash: a digest of everything the transform derived for a work item (fields, mapped
-- custom fields, metrics, status history). A page loaded again with nothing new leaves the
-- row untouched, while a retransform after a code or mapping change still rewrites it.
-- dev_pr_count: pull requests the issue's development summary reports; NULL when the site
-- serves no such summary, so the dev-status step knows which issues are worth a call.

ALTER TABLE work_items
    ADD COLUMN source_hash  text,
    ADD COLUMN dev_pr_count integer;

-- The dev-status step picks an integration's recently updated items.
CREATE INDEX work_items_integration_id_source_updated_at_idx
    ON work_items (integration_id, source_updated_at DESC);
