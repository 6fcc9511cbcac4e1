-- 0013_raw_text: raw pages are stored as text, still exactly as the source sent them.
--
-- A json column makes the server check the syntax of every page it stores: for a search page
-- of 1.8 MB that check took about 10 ms of server CPU on the development machine, twice what
-- the rest of storing it cost. etld only ever stores text it has just parsed (every answer is
-- decoded before it is kept, and what etld adds around it is encoded by the same library), so
-- the check found nothing a stored page could hold. Reading pages back is unchanged for etld;
-- to query inside one, cast it: raw_payload::json -> 'issues'.

ALTER TABLE raw_extraction_data ALTER COLUMN raw_payload TYPE text;

-- A new column type starts with the server's default compression again (pglz, several times
-- slower than lz4 for pages of this size).
DO $$
BEGIN
    EXECUTE 'ALTER TABLE raw_extraction_data ALTER COLUMN raw_payload SET COMPRESSION lz4';
EXCEPTION
    WHEN feature_not_supported OR invalid_parameter_value OR syntax_error THEN
        RAISE NOTICE 'lz4 is not available on this server; raw pages stay pglz-compressed';
END
$$;

COMMENT ON COLUMN raw_extraction_data.raw_payload IS 'The page as received from the source API: its JSON text, never re-encoded (cast to json to query it).';
