-- Schema 5 (issue 19, hosts whose hardware changes): the hashed hardware facts
-- of each license's bound host, and the last time its binding moved to a host
-- whose hardware changed (and the last refusal of a clone). One row per license, written when a host activates,
-- when its facts change at a check, and when the binding moves
-- (`portal::hardware`). Shared SQL: the facts as text (`kind:hex` words).
CREATE TABLE host_facts (
    license_number TEXT PRIMARY KEY REFERENCES licenses (number),
    hardware_id TEXT NOT NULL CHECK (length(hardware_id) = 32),
    facts TEXT NOT NULL,
    updated_at BIGINT NOT NULL CHECK (updated_at >= 0),
    rebound_at BIGINT CHECK (rebound_at >= 0),
    rebound_from TEXT CHECK (length(rebound_from) = 32),
    -- The last check refused as a cloned host: the clone window runs on from it.
    clone_refused_at BIGINT CHECK (clone_refused_at >= 0),
    CHECK ((rebound_at IS NULL) = (rebound_from IS NULL))
);
