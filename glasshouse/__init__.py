"""Glasshouse: workplace monitoring and performance management with purpose separation."""
