-- Progress keyed by what was fetched. A source is one event of one contract at one target (an
-- address, or the children of a factory); its key names it for good, its layout records how
-- its rows were decoded. A range record covers a set of sources (a coverage), so an edited
-- chain file is planned as the exact difference.
CREATE TABLE IF NOT EXISTS indexer.sources (
    id          bigserial PRIMARY KEY,
    chain_id    bigint NOT NULL,
    key         text NOT NULL,      -- contract:target:event
    contract    text NOT NULL,
    target      text NOT NULL,      -- lower-case address, or factory:NAME
    event       text NOT NULL,      -- canonical signature
    topic0      bytea,              -- null for an anonymous event
    layout      text NOT NULL,      -- signature with indexed flags and parameter names
    table_name  text NOT NULL,
    start_block bigint NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (chain_id, key)
);

CREATE TABLE IF NOT EXISTS indexer.coverages (
    id        bigserial PRIMARY KEY,
    chain_id  bigint NOT NULL,
    digest    bytea NOT NULL,       -- sha256 of the sorted member ids: one row per set
    members   bigint[] NOT NULL,    -- indexer.sources ids, sorted
    UNIQUE (chain_id, digest)
);

-- Range records now name a coverage. Records written before (per contract name, in
-- ``source``) are upgraded at the first start of a chain with its chain file.
ALTER TABLE indexer.ranges ADD COLUMN IF NOT EXISTS coverage bigint;
ALTER TABLE indexer.ranges DROP CONSTRAINT IF EXISTS ranges_pkey;
ALTER TABLE indexer.ranges ALTER COLUMN source DROP NOT NULL;
ALTER TABLE indexer.ranges ALTER COLUMN events TYPE bigint;
CREATE UNIQUE INDEX IF NOT EXISTS ranges_coverage_idx
    ON indexer.ranges (chain_id, coverage, from_block);
CREATE INDEX IF NOT EXISTS ranges_legacy_idx
    ON indexer.ranges (chain_id, source, from_block) WHERE coverage IS NULL;
CREATE INDEX IF NOT EXISTS ranges_to_block_idx ON indexer.ranges (chain_id, to_block);

-- What is done, one row per source and range record (the records name coverages).
CREATE OR REPLACE VIEW indexer.source_ranges AS
SELECT r.chain_id, s.key AS source, s.contract, s.target, s.event, r.from_block, r.to_block,
       r.events, r.worker, r.fence, r.done_at
FROM indexer.ranges r
JOIN indexer.coverages c ON c.id = r.coverage
JOIN indexer.sources s ON s.id = ANY (c.members) AND s.chain_id = r.chain_id;
