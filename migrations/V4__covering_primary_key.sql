-- The primary key carries each identifier's canonical ID (`INCLUDE (canonical_id)`), so that a
-- lookup, the hot path of every MintIds, LookupIds and adapter message, is answered from the index
-- alone (an index-only scan) instead of one index probe plus one visit to the table's heap per
-- identifier. At 50 million mappings the heap (4.8 GB) and the old key (2.6 GB) no longer fit a
-- sized server's shared buffers together; the covering key (3.2 GB) does, and a full reindex then
-- reads nothing else (docs/SCALING.md has the measurements). Uniqueness is unchanged: the key
-- columns are the same three, `canonical_id` is only stored beside them.
--
-- Rebuilding the key takes an exclusive lock on the table for as long as the index build takes
-- (about 2 minutes at 50 million rows on 2 cores). To keep serving during it, build the index
-- beforehand without blocking writers, under this exact name and definition, and this migration
-- then only swaps it in (an instant catalog change):
--
--   CREATE UNIQUE INDEX CONCURRENTLY source_identifiers_key_with_id
--       ON source_identifiers (identifier_type, ontology_type, value) INCLUDE (canonical_id);
--
-- A prepared index that is invalid (an interrupted CONCURRENTLY build) or defined otherwise is
-- refused with a message rather than dropped: it is the operator's, not ours.
DO $$
DECLARE
    expected constant text := 'btree (identifier_type, ontology_type, value) INCLUDE (canonical_id)';
    prepared record;
BEGIN
    SELECT i.indisvalid AS valid, i.indisunique AS is_unique,
           pg_get_indexdef(i.indexrelid) AS definition INTO prepared
    FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
    WHERE c.relname = 'source_identifiers_key_with_id' AND i.indrelid = 'source_identifiers'::regclass;
    IF NOT FOUND THEN
        ALTER TABLE source_identifiers
            DROP CONSTRAINT source_identifiers_pkey,
            ADD CONSTRAINT source_identifiers_pkey
                PRIMARY KEY (identifier_type, ontology_type, value) INCLUDE (canonical_id);
    ELSIF prepared.valid AND prepared.is_unique
          AND split_part(prepared.definition, ' USING ', 2) = expected THEN
        ALTER TABLE source_identifiers
            DROP CONSTRAINT source_identifiers_pkey,
            ADD CONSTRAINT source_identifiers_pkey PRIMARY KEY USING INDEX source_identifiers_key_with_id;
    ELSE
        RAISE EXCEPTION 'idminter V4: index source_identifiers_key_with_id exists but is % (found: %); drop it, or rebuild it as the migration''s comment says',
            CASE WHEN prepared.valid THEN 'defined otherwise' ELSE 'invalid (an interrupted CREATE INDEX CONCURRENTLY)' END,
            prepared.definition;
    END IF;
END
$$;
