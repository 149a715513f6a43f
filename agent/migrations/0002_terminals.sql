-- o2c-agent schema v2: POS terminals managed with `o2c-agent terminal add`
-- and `terminal revoke` (in addition to `[[terminals]]` in the config
-- file). Only the SHA-256 of a token is stored; the token is printed once.

CREATE TABLE terminals (
    id                  TEXT PRIMARY KEY NOT NULL,
    token_sha256        BLOB NOT NULL UNIQUE CHECK (length(token_sha256) = 32),
    created_at_ms       INTEGER NOT NULL,
    revoked_at_ms       INTEGER
) WITHOUT ROWID;

-- Bumped by every change to `terminals`, so the running agent's auth cache
-- can tell with one point read whether it must reload the list.
CREATE TABLE terminals_generation (
    id                  INTEGER PRIMARY KEY CHECK (id = 1),
    generation          INTEGER NOT NULL
);
INSERT INTO terminals_generation (id, generation) VALUES (1, 0);

CREATE TRIGGER terminals_ai AFTER INSERT ON terminals BEGIN
    UPDATE terminals_generation SET generation = generation + 1 WHERE id = 1;
END;
CREATE TRIGGER terminals_au AFTER UPDATE ON terminals BEGIN
    UPDATE terminals_generation SET generation = generation + 1 WHERE id = 1;
END;
CREATE TRIGGER terminals_ad AFTER DELETE ON terminals BEGIN
    UPDATE terminals_generation SET generation = generation + 1 WHERE id = 1;
END;
