"""The live tail of one chain: leadership and the follow loop (``follower``), one look at the
head and the blocks it brings (``tail``), the blocks it holds (``window``), when to undo stored
blocks (``reorgs``, with the fork point from ``forks`` and the pure rules of ``rules``), the
undo itself (``repair``) and the latency trace (``trace``). Websocket heads: ``rpc.heads``;
stored blocks and rollback in Postgres: ``sink.blocks``; leadership: ``lease.leadership``."""
