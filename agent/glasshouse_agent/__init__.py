"""Glasshouse endpoint agent: captures what the server's policy allows, merges it into spans,
keeps it in a durable local spool and uploads it in acknowledged batches."""

__version__ = "0.1.0"
