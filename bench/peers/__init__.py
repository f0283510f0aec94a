"""Reference servers that chatd is measured against, started by the harness."""
