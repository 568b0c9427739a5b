-- Lifecycle: canonical IDs can be redirected (merged into another) and withdrawn (a tombstone), and
-- restored. The mappings of `source_identifiers` never change (its permanence trigger stays); the
-- state of an ID lives beside them:
-- * `canonical_id_states` has a row only for an ID that was ever redirected or withdrawn (restored
--   ones keep a row saying `active`, with the reason of their restoration). No row means ACTIVE,
--   so the usual case, where nothing was ever redirected, stays an empty table.
-- * `canonical_id_events` is the log of every change, which refuses UPDATE, DELETE and TRUNCATE.
-- * `canonical_id_states_generation` is one counter, bumped by every statement that changes the
--   states, so that a server process can tell in one cheap read whether its copy of the states is
--   still current.
--
-- The rules, enforced here so that they hold between server processes and against any writer:
-- a redirect's target is always an ACTIVE (so known, not withdrawn, not redirected) ID, so chains
-- are collapsed and cycles impossible; nothing redirects to an ID that is not ACTIVE; only minted
-- IDs have a state. They are checked at commit by a constraint trigger that first takes the
-- lifecycle lock, a transaction-level advisory lock that every change holds until it commits: two
-- changes never check concurrently, and each checks the state the other committed.

CREATE TABLE canonical_id_states (
    canonical_id    text COLLATE "C" NOT NULL,
    status          text COLLATE "C" NOT NULL,
    redirect_target text COLLATE "C",
    reason          text NOT NULL,
    changed_at      timestamptz NOT NULL DEFAULT now(),
    changed_by      text COLLATE "C" NOT NULL,
    CONSTRAINT canonical_id_states_pkey PRIMARY KEY (canonical_id),
    CONSTRAINT canonical_id_states_status
        CHECK (status IN ('active', 'redirected', 'withdrawn')),
    CONSTRAINT canonical_id_states_target_iff_redirected
        CHECK ((status = 'redirected') = (redirect_target IS NOT NULL)),
    CONSTRAINT canonical_id_states_not_to_itself CHECK (redirect_target <> canonical_id),
    CONSTRAINT canonical_id_states_reason_length CHECK (octet_length(reason) BETWEEN 1 AND 1000),
    CONSTRAINT canonical_id_states_changed_by_length
        CHECK (octet_length(changed_by) BETWEEN 1 AND 255)
);

-- Finds the IDs redirected to one ID (to collapse chains, and to refuse withdrawing a target).
CREATE INDEX canonical_id_states_redirect_target
    ON canonical_id_states (redirect_target) WHERE redirect_target IS NOT NULL;

COMMENT ON TABLE canonical_id_states IS
    'idminter: the lifecycle state of canonical IDs that were ever redirected or withdrawn; no row means ACTIVE';

CREATE TABLE canonical_id_events (
    event_id            bigint GENERATED ALWAYS AS IDENTITY,
    canonical_id        text COLLATE "C" NOT NULL,
    action              text COLLATE "C" NOT NULL,
    target_canonical_id text COLLATE "C",
    reason              text NOT NULL,
    changed_at          timestamptz NOT NULL DEFAULT now(),
    changed_by          text COLLATE "C" NOT NULL,
    CONSTRAINT canonical_id_events_pkey PRIMARY KEY (event_id),
    CONSTRAINT canonical_id_events_action CHECK (action IN ('redirect', 'withdraw', 'restore')),
    CONSTRAINT canonical_id_events_target_iff_redirect
        CHECK ((action = 'redirect') = (target_canonical_id IS NOT NULL)),
    CONSTRAINT canonical_id_events_reason_length CHECK (octet_length(reason) BETWEEN 1 AND 1000),
    CONSTRAINT canonical_id_events_changed_by_length
        CHECK (octet_length(changed_by) BETWEEN 1 AND 255)
);

CREATE INDEX canonical_id_events_by_id ON canonical_id_events (canonical_id, event_id);

COMMENT ON TABLE canonical_id_events IS
    'idminter: the append-only log of lifecycle changes (redirect, withdraw, restore)';

CREATE FUNCTION canonical_id_events_are_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'idminter: the lifecycle event log is append-only (% refused)', TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END
$$;

CREATE TRIGGER canonical_id_events_are_append_only
    BEFORE UPDATE OR DELETE ON canonical_id_events
    FOR EACH ROW EXECUTE FUNCTION canonical_id_events_are_append_only();

CREATE TRIGGER canonical_id_events_are_not_truncated
    BEFORE TRUNCATE ON canonical_id_events
    FOR EACH STATEMENT EXECUTE FUNCTION canonical_id_events_are_append_only();

CREATE TABLE canonical_id_states_generation (
    only_row   boolean NOT NULL DEFAULT true,
    generation bigint NOT NULL,
    CONSTRAINT canonical_id_states_generation_pkey PRIMARY KEY (only_row),
    CONSTRAINT canonical_id_states_generation_one_row CHECK (only_row)
);

INSERT INTO canonical_id_states_generation (generation) VALUES (0);

COMMENT ON TABLE canonical_id_states_generation IS
    'idminter: bumped by every change of canonical_id_states; servers reload their copy when it moves';

CREATE FUNCTION canonical_id_states_bump_generation() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE canonical_id_states_generation SET generation = generation + 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER canonical_id_states_bump_generation
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON canonical_id_states
    FOR EACH STATEMENT EXECUTE FUNCTION canonical_id_states_bump_generation();

-- The rules, checked at commit for every row written, under the lifecycle lock (the key is
-- "lifecycl" in ASCII; the application takes the same lock before it reads anything).
CREATE FUNCTION canonical_id_states_follow_the_rules() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    row canonical_id_states;
BEGIN
    PERFORM pg_advisory_xact_lock(7811887614297465708);
    -- The row as committed now, not as first written: a later statement of the same transaction
    -- may have changed or removed it.
    SELECT * INTO row FROM canonical_id_states WHERE canonical_id = NEW.canonical_id;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM source_identifiers WHERE canonical_id = row.canonical_id) THEN
        RAISE EXCEPTION 'idminter: % is not a minted canonical ID', row.canonical_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF row.status = 'redirected' THEN
        IF NOT EXISTS (SELECT 1 FROM source_identifiers WHERE canonical_id = row.redirect_target) THEN
            RAISE EXCEPTION 'idminter: % redirects to %, which is not a minted canonical ID',
                row.canonical_id, row.redirect_target
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        IF EXISTS (SELECT 1 FROM canonical_id_states
                   WHERE canonical_id = row.redirect_target AND status <> 'active') THEN
            RAISE EXCEPTION 'idminter: % redirects to %, which is not ACTIVE',
                row.canonical_id, row.redirect_target
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
    END IF;
    IF row.status <> 'active'
       AND EXISTS (SELECT 1 FROM canonical_id_states WHERE redirect_target = row.canonical_id) THEN
        RAISE EXCEPTION 'idminter: % is % yet other IDs redirect to it', row.canonical_id, row.status
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER canonical_id_states_follow_the_rules
    AFTER INSERT OR UPDATE ON canonical_id_states
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION canonical_id_states_follow_the_rules();
