-- System tables of the indexer (public contract 3). Applied once, in order, under an advisory lock.
CREATE TABLE IF NOT EXISTS indexer.chains (
    chain_id          bigint PRIMARY KEY,
    name              text NOT NULL,
    partition_blocks  bigint NOT NULL,
    finality_depth    integer NOT NULL,
    block_time        double precision NOT NULL,
    genesis_hash      bytea,  -- hash of block 0: a different chain behind the same id is refused
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- A source is one configured contract of a chain. A row says: every log of this source in
-- [from_block, to_block] is committed. Rows of one source never overlap (checked at commit under
-- a per-chain advisory lock), and they commit in the same transaction as the event rows.
CREATE TABLE IF NOT EXISTS indexer.ranges (
    chain_id    bigint NOT NULL,
    source      text NOT NULL,
    from_block  bigint NOT NULL,
    to_block    bigint NOT NULL,
    events      integer NOT NULL DEFAULT 0,
    worker      text,
    fence       bigint,
    done_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (chain_id, source, from_block),
    CHECK (to_block >= from_block)
);

-- Block headers of blocks that held indexed logs (timestamps) and of the unfinalized window.
CREATE TABLE IF NOT EXISTS indexer.blocks (
    chain_id     bigint NOT NULL,
    number       bigint NOT NULL,
    hash         bytea NOT NULL,
    parent_hash  bytea NOT NULL,
    timestamp    timestamptz NOT NULL,
    PRIMARY KEY (chain_id, number)
);

-- Children discovered from factory events; they survive restarts.
CREATE TABLE IF NOT EXISTS indexer.contracts (
    chain_id      bigint NOT NULL,
    contract      text NOT NULL,
    address       bytea NOT NULL,
    factory       text NOT NULL,
    block_number  bigint NOT NULL,
    log_index     integer NOT NULL,
    tx_hash       bytea NOT NULL,
    PRIMARY KEY (chain_id, contract, address)
);
CREATE INDEX IF NOT EXISTS contracts_block_idx ON indexer.contracts (chain_id, block_number);

-- Event tables created by the indexer and the signature they were created for.
CREATE TABLE IF NOT EXISTS indexer.event_tables (
    table_name  text PRIMARY KEY,
    contract    text NOT NULL,
    event       text NOT NULL,
    signature   text NOT NULL,
    columns     jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
