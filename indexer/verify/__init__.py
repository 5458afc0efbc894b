"""Proving the tables equal the chain: stored rows compared with the chain's logs fetched and
decoded again (``rows``: the comparison, pure; ``check``: one unit, through the seams; the
command and the repair are in ``ops.verify``)."""
