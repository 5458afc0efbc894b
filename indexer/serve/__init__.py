"""``indexer serve``: the query API over the event tables (GraphQL, read-only SQL, live pushes).

Pure: ``values`` (column kinds, what goes in and out), ``tables`` (the tables served and their
filters), ``cursor``, ``pages`` (the SQL of one page), ``frontier`` (what is indexed, per table
and chain), ``limits``. The GraphQL side: ``scalars``, ``graph`` (the schema, generated from
``indexer.event_tables``), ``rows`` (the executor's fast path for rows), ``resolve``,
``engine`` (parse, validate, limit, execute, status). I/O: ``watch`` (polls the database),
``sqlapi``, ``live`` and ``ws`` (subscriptions), ``http`` and ``app`` (the process).
"""
