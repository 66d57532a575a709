"""Helpers shared by the test-suite (processes, test-only tasks)."""
