"""Proving the tables equal the chain: stored rows compared with the chain's logs fetched and
decoded again (``rows``: the comparison, pure; ``check``: one unit, through the seams; ``repair``:
the differing blocks replaced exactly once; ``background``: the checks while indexing; the
command is ``ops.verify``). With a proof the chain's logs come from the
blocks' receipts, proven against each block's receiptsRoot and canonical hash (``encoding`` and
``proof``: pure; ``prover``: the fetching)."""
