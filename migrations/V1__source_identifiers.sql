-- One row per source identifier that has a canonical ID. The table is the whole state of idminter.
--
-- Guarantees, enforced here rather than in code so that they hold between server processes:
-- * one canonical ID per source identifier, forever: the primary key, and a trigger that refuses
--   UPDATE and DELETE;
-- * a minted ID is never minted again: `minted` is TRUE on the row an ID was minted for and NULL
--   on rows that inherited it from a predecessor, and (canonical_id, minted) is unique; NULLs are
--   distinct, so any number of inheritors may share the ID of its one minted row.
-- Columns use the "C" collation: matching is byte-exact and index comparisons are cheap.
CREATE TABLE source_identifiers (
    identifier_type text COLLATE "C" NOT NULL,
    ontology_type   text COLLATE "C" NOT NULL,
    value           text COLLATE "C" NOT NULL,
    canonical_id    text COLLATE "C" NOT NULL,
    minted          boolean,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT source_identifiers_pkey PRIMARY KEY (identifier_type, ontology_type, value),
    CONSTRAINT source_identifiers_one_minted_row_per_canonical_id UNIQUE (canonical_id, minted),
    CONSTRAINT source_identifiers_minted_is_true_or_null CHECK (minted),
    CONSTRAINT source_identifiers_canonical_id_format
        CHECK (canonical_id ~ '^[a-hjkmnp-z][a-hjkmnp-z2-9]{7}$'),
    CONSTRAINT source_identifiers_field_lengths CHECK (
        octet_length(identifier_type) BETWEEN 1 AND 255
        AND octet_length(ontology_type) BETWEEN 1 AND 255
        AND octet_length(value) BETWEEN 1 AND 255
    )
);

COMMENT ON TABLE source_identifiers IS
    'idminter: the permanent canonical ID of each source identifier';
COMMENT ON COLUMN source_identifiers.minted IS
    'TRUE when the canonical ID was minted for this identifier; NULL when inherited from a predecessor';

CREATE FUNCTION source_identifiers_are_permanent() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'idminter: a source identifier''s canonical ID is permanent (% refused)', TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END
$$;

CREATE TRIGGER source_identifiers_are_permanent
    BEFORE UPDATE OR DELETE ON source_identifiers
    FOR EACH ROW EXECUTE FUNCTION source_identifiers_are_permanent();
