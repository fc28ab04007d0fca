-- Introspection, the hottest read, finds everything on the token's own row: the client it
-- was issued to and the login of its user (none for client credentials), copied from its
-- grant when the token is issued. Neither changes: a grant keeps its client and user, and a
-- login is never renamed. One join (the caller) instead of three.
ALTER TABLE oauth_tokens ADD COLUMN client_pk BIGINT REFERENCES oauth_clients (id);
ALTER TABLE oauth_tokens ADD COLUMN username TEXT;
UPDATE oauth_tokens SET
    client_pk = (SELECT g.client_pk FROM oauth_grants g WHERE g.id = oauth_tokens.grant_id),
    username = (SELECT u.login FROM oauth_grants g JOIN users u ON u.id = g.user_id
                WHERE g.id = oauth_tokens.grant_id);
