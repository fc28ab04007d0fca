-- Times are seconds since the Unix epoch, UTC (BIGINT): the model, SQLite and PostgreSQL
-- compare `now >= expires_at` identically. Flags are BIGINT 0/1: both dialects map it the same.

CREATE TABLE users (
    id          INTEGER PRIMARY KEY,
    login       TEXT   NOT NULL,
    login_key   TEXT   NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);

CREATE TABLE crates (
    id          INTEGER PRIMARY KEY,
    name        TEXT   NOT NULL,
    name_key    TEXT   NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL,
    -- Touched by every write to the crate: the portable row lock that serialises them.
    updated_at  BIGINT NOT NULL,
    downloads   BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE crate_owners (
    crate_id    BIGINT NOT NULL REFERENCES crates (id),
    user_id     BIGINT NOT NULL REFERENCES users (id),
    added_at    BIGINT NOT NULL,
    PRIMARY KEY (crate_id, user_id)
);

CREATE TABLE versions (
    id           INTEGER PRIMARY KEY,
    crate_id     BIGINT NOT NULL REFERENCES crates (id),
    num          TEXT   NOT NULL,
    -- The version without build metadata: cargo treats 1.0.0+a and 1.0.0+b as one release.
    num_key      TEXT   NOT NULL,
    checksum     TEXT   NOT NULL,
    yanked       BIGINT NOT NULL DEFAULT 0 CHECK (yanked IN (0, 1)),
    published_at BIGINT NOT NULL,
    published_by BIGINT NOT NULL REFERENCES users (id),
    downloads    BIGINT NOT NULL DEFAULT 0,
    UNIQUE (crate_id, num_key)
);

CREATE TABLE oauth_clients (
    id           INTEGER PRIMARY KEY,
    client_id    TEXT   NOT NULL UNIQUE,
    name         TEXT   NOT NULL,
    confidential BIGINT NOT NULL CHECK (confidential IN (0, 1)),
    -- sha256 of the secret; NULL exactly for public clients.
    secret_hash  TEXT,
    scope        TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    CHECK ((confidential = 1) = (secret_hash IS NOT NULL))
);

CREATE TABLE oauth_redirect_uris (
    client_pk   BIGINT NOT NULL REFERENCES oauth_clients (id),
    uri         TEXT   NOT NULL,
    PRIMARY KEY (client_pk, uri)
);

CREATE TABLE oauth_codes (
    id           INTEGER PRIMARY KEY,
    code_hash    TEXT   NOT NULL UNIQUE,
    client_pk    BIGINT NOT NULL REFERENCES oauth_clients (id),
    user_id      BIGINT NOT NULL REFERENCES users (id),
    redirect_uri TEXT   NOT NULL,
    scope        TEXT   NOT NULL,
    challenge    TEXT,
    expires_at   BIGINT NOT NULL,
    redeemed_at  BIGINT,
    created_at   BIGINT NOT NULL
);

-- A grant is a token family: everything issued from one code redemption (or one client
-- credentials request), through every refresh. Revocation of a family revokes all its tokens.
CREATE TABLE oauth_grants (
    id          INTEGER PRIMARY KEY,
    client_pk   BIGINT NOT NULL REFERENCES oauth_clients (id),
    user_id     BIGINT REFERENCES users (id),
    -- A code yields at most one grant, whatever races the application code loses.
    code_id     BIGINT UNIQUE REFERENCES oauth_codes (id),
    created_at  BIGINT NOT NULL
);

CREATE TABLE oauth_tokens (
    id          INTEGER PRIMARY KEY,
    token_hash  TEXT   NOT NULL UNIQUE,
    kind        TEXT   NOT NULL CHECK (kind IN ('access', 'refresh')),
    grant_id    BIGINT NOT NULL REFERENCES oauth_grants (id),
    scope       TEXT   NOT NULL,
    expires_at  BIGINT NOT NULL,
    revoked_at  BIGINT,
    -- Refresh tokens only: when it was exchanged for its successor.
    rotated_at  BIGINT,
    created_at  BIGINT NOT NULL
);

CREATE INDEX oauth_tokens_by_grant ON oauth_tokens (grant_id);
CREATE INDEX versions_by_crate ON versions (crate_id);
