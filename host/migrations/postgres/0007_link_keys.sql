-- The keys that sign response links. Each key is sealed with the secrets
-- key (`enc:v1:...`), never stored in clear; a link names the id of the
-- key that signed it, new links are signed with the newest key, and a key
-- is dropped only when no link it signed can still be answered (or when
-- an admin retires it at once). The one key of older versions (meta
-- `link_key`) becomes key 1 at start. Keep in step with the other
-- dialect's 0007.
CREATE TABLE link_keys (
    id         BIGINT PRIMARY KEY,
    sealed     TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);
