"""Django app configuration for the workflow engine."""

from __future__ import annotations

import importlib

from django.apps import AppConfig
from django.conf import settings
from django.utils.module_loading import autodiscover_modules


class WorkflowsConfig(AppConfig):
    name = "workflows"
    verbose_name = "Workflows"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Workflows register themselves with @workflow at import: find every app's
        # ``flows`` module (as admin finds ``admin.py``), then the configured extras.
        autodiscover_modules("flows")
        for module in settings.POLOS_WORKFLOW_MODULES:
            importlib.import_module(module)
