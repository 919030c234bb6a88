"""Allows `python -m glasshouse_agent`, the same as the `glasshouse-agent` entry point."""

from glasshouse_agent.cli import main

raise SystemExit(main())
