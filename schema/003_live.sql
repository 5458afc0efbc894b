-- The live tail and reorgs.
-- reorg_epoch grows with every repair: a backfill commit fetched before a repair of its blocks
-- carries the older epoch and is refused (checked under the chain's commit lock).
-- live_fence is the fencing token of the live follower that wrote last: a follower whose
-- leadership lease was taken over cannot commit or delete anything afterwards.
ALTER TABLE indexer.chains ADD COLUMN IF NOT EXISTS reorg_epoch bigint NOT NULL DEFAULT 0;
ALTER TABLE indexer.chains ADD COLUMN IF NOT EXISTS live_fence bigint NOT NULL DEFAULT 0;

-- Rows of indexer.blocks: the live tail's blocks (live: one linked chain, checked parent by
-- parent as it was followed; pruned below the unfinalized window except every 1000th block),
-- and the last block of every backfill unit (not live), kept for good, so that a reorg deeper
-- than the window is still found.
ALTER TABLE indexer.blocks ADD COLUMN IF NOT EXISTS live boolean NOT NULL DEFAULT false;
ALTER TABLE indexer.blocks ADD COLUMN IF NOT EXISTS checkpoint boolean NOT NULL DEFAULT false;

-- One row per repair: what the follower found and how much it undid.
CREATE TABLE IF NOT EXISTS indexer.reorgs (
    chain_id      bigint NOT NULL,
    detected_at   timestamptz NOT NULL DEFAULT now(),
    fork_block    bigint NOT NULL,   -- highest block kept: rows above it were deleted
    old_tip       bigint NOT NULL,   -- highest block indexed before the repair
    new_tip       bigint NOT NULL,   -- head of the node when the reorg was found
    depth         bigint NOT NULL,   -- old_tip - fork_block
    deep          boolean NOT NULL,  -- deeper than the chain's finality_depth
    rows_deleted  bigint NOT NULL,
    old_hash      bytea,             -- our hash of old_tip, and the node's hash at that height
    new_hash      bytea
);
CREATE INDEX IF NOT EXISTS reorgs_chain_idx ON indexer.reorgs (chain_id, detected_at);
