"""What faces the operator: the command (``cli``, ``commands``, ``workers``), the wiring of a
run (``app``) and of one chain (``chain``), the HTTP endpoints (``web``, ``readiness``),
progress and the summary (``progress``), ``status``, ``chain check`` (``check``), ``chain add``
(``chainadd``, ``probe``) and the embedded Postgres (``pgembed``)."""
