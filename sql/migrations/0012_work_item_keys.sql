-- 0012_work_item_keys: the rest of the per-row foreign key checks of an issue page's load.
--
-- Like 0011 for changelogs: a page of 100 issues wrote 100 work items checking five keys
-- each and about 1,000 changelog rows checking their work item, every check an index probe
-- plus a share lock on a parent row. What the keys did stays done:
-- * work_items.project_id, wit_id, status_id (ON DELETE SET NULL): statement triggers on
--   projects, wits and statuses clear the references to deleted rows, once per DELETE
--   statement. etld itself never deletes any of them.
-- * changelogs.work_item_id (ON DELETE CASCADE): a statement trigger on work_items deletes
--   the history of deleted items (a tenant or integration removed; etld soft-deletes
--   items itself). The loader only writes ids returned by the upsert in the same
--   transaction.
-- work_items keeps its tenant and integration keys: they are what removes a tenant's or an
-- integration's items.

ALTER TABLE work_items
    DROP CONSTRAINT work_items_project_id_fkey,
    DROP CONSTRAINT work_items_wit_id_fkey,
    DROP CONSTRAINT work_items_status_id_fkey;

ALTER TABLE changelogs DROP CONSTRAINT changelogs_work_item_id_fkey;

CREATE FUNCTION work_items_forget_projects() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE work_items SET project_id = NULL WHERE project_id IN (SELECT id FROM gone);
    RETURN NULL;
END
$$;

CREATE FUNCTION work_items_forget_wits() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE work_items SET wit_id = NULL WHERE wit_id IN (SELECT id FROM gone);
    RETURN NULL;
END
$$;

CREATE FUNCTION work_items_forget_statuses() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE work_items SET status_id = NULL WHERE status_id IN (SELECT id FROM gone);
    RETURN NULL;
END
$$;

CREATE FUNCTION changelogs_follow_work_items() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM changelogs WHERE work_item_id IN (SELECT id FROM gone);
    RETURN NULL;
END
$$;

CREATE TRIGGER projects_deleted_clear_work_items
    AFTER DELETE ON projects REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION work_items_forget_projects();

CREATE TRIGGER wits_deleted_clear_work_items
    AFTER DELETE ON wits REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION work_items_forget_wits();

CREATE TRIGGER statuses_deleted_clear_work_items
    AFTER DELETE ON statuses REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION work_items_forget_statuses();

CREATE TRIGGER work_items_deleted_drop_changelogs
    AFTER DELETE ON work_items REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION changelogs_follow_work_items();
