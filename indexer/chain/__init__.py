"""One chain's shared pieces, used by the backfill and the live tail alike: the catalogue of
what is indexed (``catalog``), what is done (``state``, its one owner), fetching and decoding
units (``fetch``, through the ``source`` seam), the head (``head``) and the tallies
(``progress``), bundled for the loops in ``parts``."""
