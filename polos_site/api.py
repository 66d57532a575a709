"""The HTTP API (``/api/v1/``): one NinjaAPI; each app adds its router to it.

Other parts of the project call ``api.add_router(prefix, router)`` here (workflows, approvals).
"""

from ninja import NinjaAPI

api = NinjaAPI(title="Polos for Django", version="1", urls_namespace="api")
