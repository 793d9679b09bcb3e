-- ISO 15143-3 (AEMP 2.0): the OAuth 2.0 clients fleet tools read the feed with (docs/aemp.md).
--
-- A client is issued by the admin for one customer and sees only that customer's machines.
-- Only a SHA-256 of its secret is stored, and of every access token issued to it (like
-- api_tokens): a copy of this table opens nothing. Revoking a client ends its tokens too.

CREATE TABLE aemp_clients (
    client_id    text PRIMARY KEY,
    secret_hash  bytea NOT NULL,
    customer_id  text NOT NULL,
    name         text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);
CREATE INDEX aemp_clients_customer_idx ON aemp_clients (customer_id);

CREATE TABLE aemp_access_tokens (
    token_hash  bytea PRIMARY KEY,
    client_id   text NOT NULL REFERENCES aemp_clients (client_id),
    issued_at   timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX aemp_access_tokens_expiry_idx ON aemp_access_tokens (expires_at);

COMMENT ON TABLE aemp_clients IS 'OAuth 2.0 clients (client credentials) of the AEMP feed, one customer each.';
COMMENT ON TABLE aemp_access_tokens IS 'Bearer tokens issued to AEMP clients (SHA-256 only), until expires_at.';
