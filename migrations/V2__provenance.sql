-- Provenance: who created each row. `created_at` has been there since V1; `created_by` is the
-- principal of the call that created the row: the NAME of its token when the server checks tokens,
-- `anonymous` when it does not, `import` for rows brought in by `idminter import`.
--
-- Rolling deploys: a server of the previous release, which does not know this column, keeps
-- inserting rows; they get the default, `anonymous`, which is what that release would have said.
-- Adding a column with a constant default rewrites nothing, and the CHECK is added NOT VALID: every
-- existing row has the default, so the check needs no scan of a 50-million-row table to hold.
ALTER TABLE source_identifiers
    ADD COLUMN created_by text COLLATE "C" NOT NULL DEFAULT 'anonymous';

ALTER TABLE source_identifiers
    ADD CONSTRAINT source_identifiers_created_by_length
        CHECK (octet_length(created_by) BETWEEN 1 AND 255) NOT VALID;

COMMENT ON COLUMN source_identifiers.created_by IS
    'the principal that created the row: a token name, anonymous (no tokens), or import';
