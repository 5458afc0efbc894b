"""The backfill of one chain: the loop (``loop``), the work on one unit returning an outcome
(``worker``), and how large and how many units may be in flight (``pacing``, pure)."""
