"""The approval console's pages."""

from django.urls import path
from django.views.generic import RedirectView

from . import views

app_name = "approvals"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="approvals:inbox", permanent=False), name="home"),
    path("approvals/", views.inbox, name="inbox"),
]
