"""Demo data and a demo send for the example site (management commands only)."""
