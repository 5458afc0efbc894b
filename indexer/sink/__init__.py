"""Postgres: the seam and its values (``api``), the Postgres sink of one chain (``postgres``),
and what it is made of: the pool, migrations and chain registration (``database``), event
tables and partitions (``tables``, DDL text in ``schema``), the commit (``commit``), what is
done read back (``queries``), stored blocks and reorg repair (``blocks``)."""
