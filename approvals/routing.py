"""WebSocket URL routes, mounted by ``polos_site.asgi``."""

from django.urls import path

from . import consumers

websocket_urlpatterns = [
    path("ws/approvals/", consumers.ApprovalsConsumer.as_asgi()),
    path("ws/executions/<uuid:execution_id>/", consumers.ExecutionConsumer.as_asgi()),
]
