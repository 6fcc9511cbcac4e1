-- 0010_raw_json: raw pages are stored as json text, exactly as the source sent them.
--
-- jsonb re-parses every page into its binary form on the server, drops duplicate keys and
-- reorders the rest, and refuses the \u0000 escape that a source may legitimately send. For a
-- page of a few MB that parse is most of what storing it costs the server (about 26 ms
-- against 6 ms for json on the development machine). Nothing queries inside raw pages: they are
-- read whole, by id, to be transformed again. json keeps the received text and still checks
-- that it is JSON. The column keeps lz4 compression where the server has it.

ALTER TABLE raw_extraction_data ALTER COLUMN raw_payload TYPE json USING raw_payload::json;

DO $$
BEGIN
    EXECUTE 'ALTER TABLE raw_extraction_data ALTER COLUMN raw_payload SET COMPRESSION lz4';
EXCEPTION
    WHEN feature_not_supported OR invalid_parameter_value OR syntax_error THEN
        RAISE NOTICE 'lz4 is not available on this server; raw pages stay pglz-compressed';
END
$$;

COMMENT ON COLUMN raw_extraction_data.raw_payload IS 'The page as received from the source API (json text, not re-encoded).';
