"""The pure-Python engine: registry, context (``ctx.step.*``), replay. No ORM, no Celery."""
