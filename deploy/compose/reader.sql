-- Run once by the postgres image when the database is first made (docker-entrypoint-initdb.d):
-- the read-only login of `indexer serve` /sql, with a password (the indexer's migration 005
-- finds it and grants it SELECT on the system and event tables). Demo credentials: change
-- them anywhere else.
CREATE ROLE indexer_reader LOGIN PASSWORD 'reader' NOSUPERUSER NOCREATEDB NOCREATEROLE;
