-- Facts about this database. instance_id namespaces the lease board's Redis keys, so that
-- two databases (say staging and production) sharing one Redis never see each other's leases.
CREATE TABLE IF NOT EXISTS indexer.meta (
    key    text PRIMARY KEY,
    value  text NOT NULL
);
INSERT INTO indexer.meta (key, value)
VALUES ('instance_id', replace(gen_random_uuid()::text, '-', ''))
ON CONFLICT (key) DO NOTHING;
