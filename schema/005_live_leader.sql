-- The live tail's leadership, for processes that share no lease board (no REDIS_URL): the
-- holder (its worker id) and until when it holds it (renewed every couple of seconds).
-- live_fence, raised by one at every new holder, is the holder's term: a commit or a repair
-- under an older term is refused (indexer.chains.live_fence, 003_live.sql).
ALTER TABLE indexer.chains ADD COLUMN IF NOT EXISTS live_holder text;
ALTER TABLE indexer.chains ADD COLUMN IF NOT EXISTS live_expires timestamptz;
