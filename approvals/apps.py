"""Django app configuration for the approval console."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models.signals import post_migrate


def definitions_sync_after_migrate(using: str = DEFAULT_DB_ALIAS, **kwargs: Any) -> None:
    """Mirror the code registry into WorkflowDefinition rows after ``migrate`` (and after a
    test database flush), so admin shows every workflow before the first start."""
    from workflows.models import WorkflowDefinition
    from workflows.services import workflow_definitions_sync

    if using != DEFAULT_DB_ALIAS:
        return
    # A partial migrate (to an earlier migration) may leave the table missing.
    if WorkflowDefinition._meta.db_table not in connections[using].introspection.table_names():
        return
    workflow_definitions_sync()


class ApprovalsConfig(AppConfig):
    name = "approvals"
    verbose_name = "Approvals"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        post_migrate.connect(
            definitions_sync_after_migrate,
            sender=self,
            dispatch_uid="approvals.definitions_sync_after_migrate",
        )
