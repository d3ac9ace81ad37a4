"""Everything that turns records into output for CI: annotations, the HTML page, pytest-html rows, and the
report files the command line reads, merges and compares.

Records in, text out: nothing here imports the pytest hooks (``plugin.py``); what a function needs is passed to it.
"""
