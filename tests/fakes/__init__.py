"""Fakes of the seams (a chain, a sink, a clock) for unit tests of the loops. They keep the
contracts of the real ones (``ChainSource``, ``Sink``, ``Clock``) and let a test inject
failures; everything else in a test that uses them is the real code."""
