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

-- Other manufacturers' AEMP feeds a customer's machines are pulled from (docs/aemp.md,
-- "Pulling other brands"). The credentials must be sent, so they are stored as given: the
-- API never shows them again. `next_poll_at` is claimed with FOR UPDATE SKIP LOCKED, so
-- several service processes can run the puller.
CREATE TABLE aemp_sources (
    source_id        text PRIMARY KEY,
    customer_id      text NOT NULL,
    base_url         text NOT NULL,
    auth             text NOT NULL CHECK (auth IN ('oauth', 'basic', 'none')),
    token_url        text,
    username         text,
    secret           text,
    poll_interval_s  integer NOT NULL DEFAULT 900 CHECK (poll_interval_s BETWEEN 60 AND 86400),
    enabled          boolean NOT NULL DEFAULT true,
    next_poll_at     timestamptz NOT NULL DEFAULT now(),
    last_polled_at   timestamptz,
    last_result      text,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX aemp_sources_due_idx ON aemp_sources (next_poll_at) WHERE enabled;

-- Which registry machine each machine of a source is (by its PIN, else serial number, else
-- equipment id at the source), so a machine is registered once and keeps its id.
CREATE TABLE aemp_source_machines (
    source_id   text NOT NULL REFERENCES aemp_sources (source_id) ON DELETE CASCADE,
    source_key  text NOT NULL,
    machine_id  text NOT NULL REFERENCES machines (machine_id),
    PRIMARY KEY (source_id, source_key)
);
