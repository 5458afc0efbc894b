-- The login the query API's /sql runs statements as (`indexer serve`, issue #12): it may read
-- the system tables and the event tables (granted by Database.migrate for $INDEXER_SCHEMA),
-- nothing else. LOGIN without a password: it can log in only where the server trusts the
-- client (local development, tests); elsewhere give it a password (ALTER ROLE indexer_reader
-- PASSWORD '...') or give `serve` another read-only login (INDEXER_SQL_URL). Roles belong to
-- the cluster: another database's migration may have made it already.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'indexer_reader') THEN
        CREATE ROLE indexer_reader LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION
            NOBYPASSRLS;
    END IF;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL;
    WHEN insufficient_privilege THEN
        RAISE NOTICE 'role indexer_reader not created (no CREATEROLE): create a read-only '
                     'login for indexer serve /sql yourself (README, Query API)';
END $$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'indexer_reader') THEN
        GRANT USAGE ON SCHEMA indexer TO indexer_reader;
        GRANT SELECT ON ALL TABLES IN SCHEMA indexer TO indexer_reader;
        ALTER DEFAULT PRIVILEGES IN SCHEMA indexer GRANT SELECT ON TABLES TO indexer_reader;
    END IF;
END $$;
