"""Admin of the engine's models."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest

from workflows.models import ApiKey
from workflows.services import api_key_create

# == API keys =====================================================================================
# (issue #5, the integration surface; keep the other models' admin above this block)


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are created here or by ``manage.py create_api_key``; the key itself is shown once,
    on creation. Deactivate a key to revoke it."""

    list_display = ("name", "prefix", "user", "is_active", "created_at", "last_used_at")
    list_filter = ("is_active",)
    search_fields = ("name", "prefix", "user__username")
    list_select_related = ("user",)
    autocomplete_fields = ("user",)
    readonly_fields = ("prefix", "created_at", "last_used_at")
    actions = ("deactivate",)

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> Any:
        if obj is None:
            return ["name", "user"]
        return ["name", "user", "is_active", "prefix", "created_at", "last_used_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> Any:
        if obj is None:
            return []
        return ["user", *self.readonly_fields]

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        key, raw_key = api_key_create(name=obj.name, user=obj.user)
        obj.pk, obj.prefix, obj.key_hash, obj.created_at = (
            key.pk,
            key.prefix,
            key.key_hash,
            key.created_at,
        )
        obj._state.adding = False
        messages.warning(
            request,
            f"The new API key is {raw_key} — copy it now: it is not stored and will not be "
            "shown again.",
        )

    @admin.action(description="Deactivate the selected keys")
    def deactivate(self, request: HttpRequest, queryset: Any) -> None:
        updated = queryset.update(is_active=False)
        self.message_user(request, f"{updated} key(s) deactivated.", messages.SUCCESS)
