"""The approval console's pages."""

from django.urls import path
from django.views.generic import RedirectView

from . import views

app_name = "approvals"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="approvals:inbox", permanent=False), name="home"),
    path("approvals/", views.inbox, name="inbox"),
    path("approvals/fragment/", views.inbox_fragment, name="inbox_fragment"),
    path("approvals/history/", views.history, name="history"),
    path("approve/<uuid:execution_id>/", views.approve, name="approve"),
    path("approve/<uuid:execution_id>/<path:step_key>/", views.approve, name="approve_step"),
    path("executions/<uuid:execution_id>/", views.execution_detail, name="execution"),
    path(
        "executions/<uuid:execution_id>/fragment/",
        views.execution_fragment,
        name="execution_fragment",
    ),
]
