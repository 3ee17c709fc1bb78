"""Drift checks: data drift of a model's inputs (configuration, results and judgement in
``data``; the exact calculation on raw frames in ``exact``, the binned one on the reference
profile in ``binned``), prediction drift of its output (``prediction``), and the statistics
both use (``statistics``)."""
