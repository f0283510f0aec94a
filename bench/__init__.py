"""chatd's benchmark harness (issue 4): peers, load generator, scenarios, report.

Run with ``python -m bench`` (``make bench``); never part of ``make test``.
"""
