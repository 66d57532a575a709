"""URL configuration: admin, accounts, health, the API and the approval console."""

from django.contrib import admin
from django.urls import include, path

from .api import api
from .health import healthz

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("healthz", healthz, name="healthz"),
    path("healthz/", healthz),
    path("api/v1/", api.urls),
    path("", include("approvals.urls")),
]
