"""Approval console: approval pages, inbox, live push, notifications."""
