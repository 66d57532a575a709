"""Measurements of a running Polos (workers and beat up): reusable functions that commands
and the benchmark call."""
