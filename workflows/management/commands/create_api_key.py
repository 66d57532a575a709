"""``manage.py create_api_key NAME --user USERNAME``: a new API key, printed once, alone on the
last line (scripts take ``| tail -n 1``)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from workflows.services import api_key_create


class Command(BaseCommand):
    help = "Create an API key acting as USERNAME; the key is printed once and never stored."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="What the key is for, e.g. 'billing service'.")
        parser.add_argument("--user", required=True, help="The username the key acts as.")

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["name"].strip()
        if not name:
            raise CommandError("the key needs a name")
        user_model = get_user_model()
        try:
            user = user_model._default_manager.get_by_natural_key(options["user"])
        except user_model.DoesNotExist:
            raise CommandError(f"no user {options['user']!r}") from None
        if not user.is_active:
            raise CommandError(f"user {options['user']!r} is inactive: its keys would not work")
        key, raw_key = api_key_create(name=name, user=user)
        self.stderr.write(
            f"Created API key {key.name!r} ({key.prefix}…) for {user.get_username()}. "
            "Keep it now: it is not stored and cannot be shown again."
        )
        self.stdout.write(raw_key)
