"""Template filters of the console: data made readable, time left, outcome badges."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from django import template
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from approvals import selectors

register = template.Library()

MAX_DEPTH = 6
MAX_TABLE_COLUMNS = 8
_ACRONYMS = {"id": "ID", "ip": "IP", "url": "URL", "uuid": "UUID", "api": "API", "sku": "SKU"}
_STATUS_TONES = {
    "queued": "neutral",
    "running": "info",
    "waiting": "waiting",
    "completed": "ok",
    "failed": "danger",
    "cancelled": "muted",
}
_OUTCOME_TONES = {
    selectors.OUTCOME_APPROVED: "ok",
    selectors.OUTCOME_DECIDED: "ok",
    selectors.OUTCOME_REJECTED: "danger",
    selectors.OUTCOME_TIMED_OUT: "waiting",
    selectors.OUTCOME_CANCELLED: "muted",
    selectors.OUTCOME_PENDING: "waiting",
}


@register.filter
def humanize_key(key: Any) -> str:
    """``customer_id`` -> ``Customer ID``; ``managerComment`` -> ``Manager comment``."""
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", str(key))
    words = [w for w in re.split(r"[\s_\-]+", text) if w]
    if not words:
        return str(key)
    out = [_ACRONYMS.get(w.lower(), w.lower()) for w in words]
    first = out[0]
    out[0] = first if first in _ACRONYMS.values() else first[:1].upper() + first[1:]
    return " ".join(out)


def _scalar(value: Any) -> SafeString:
    if value is None:
        return format_html('<span class="muted">{}</span>', "—")
    if isinstance(value, bool):
        return format_html(
            '<span class="flag flag-{}">{}</span>', str(value).lower(), "Yes" if value else "No"
        )
    if isinstance(value, int):
        return format_html('<span class="num">{}</span>', f"{value:,}")
    if isinstance(value, float):
        text = f"{value:,.2f}" if abs(value) >= 1 else f"{value:,}"
        if text.endswith(".00"):
            text = text[:-3]
        return format_html('<span class="num">{}</span>', text)
    text = str(value)
    if text == "":
        return format_html('<span class="muted">{}</span>', "(empty)")
    return format_html('<span class="text">{}</span>', text)


def _is_table(items: list[Any]) -> list[str] | None:
    """The columns when ``items`` reads best as a table: objects of scalars, few keys."""
    if not items or not all(isinstance(item, dict) for item in items):
        return None
    columns: list[str] = []
    for item in items:
        for key, value in item.items():
            if isinstance(value, dict | list):
                return None
            if key not in columns:
                columns.append(key)
    return columns if len(columns) <= MAX_TABLE_COLUMNS else None


def render_value(value: Any, depth: int = 0) -> SafeString:
    if depth > MAX_DEPTH:
        return format_html('<span class="muted">{}</span>', "…")
    if isinstance(value, dict):
        shown = [(k, v) for k, v in value.items() if not str(k).startswith("_")]
        if not shown:
            return format_html('<span class="muted">{}</span>', "(nothing)")
        return format_html(
            '<dl class="data">{}</dl>',
            format_html_join(
                "",
                '<div class="data-row"><dt>{}</dt><dd>{}</dd></div>',
                ((humanize_key(k), render_value(v, depth + 1)) for k, v in shown),
            ),
        )
    if isinstance(value, list):
        if not value:
            return format_html('<span class="muted">{}</span>', "(none)")
        columns = _is_table(value)
        if columns is not None:
            head = format_html_join(
                "", '<th scope="col">{}</th>', ((humanize_key(c),) for c in columns)
            )
            rows = format_html_join(
                "",
                "<tr>{}</tr>",
                (
                    (
                        format_html_join(
                            "", "<td>{}</td>", ((_scalar(row.get(c)),) for c in columns)
                        ),
                    )
                    for row in value
                ),
            )
            return format_html(
                '<div class="table-scroll"><table class="data-table"><thead><tr>{}</tr></thead>'
                "<tbody>{}</tbody></table></div>",
                head,
                rows,
            )
        return format_html(
            '<ul class="data-list">{}</ul>',
            format_html_join("", "<li>{}</li>", ((render_value(v, depth + 1),) for v in value)),
        )
    return _scalar(value)


@register.filter
def readable(value: Any) -> SafeString:
    """Any JSON value as HTML a person reads: objects as definition lists, lists of objects
    as tables, scalars formatted. Keys starting with ``_`` (``_form``) are left out."""
    return render_value(value)


@register.filter
def has_data(value: Any) -> bool:
    if isinstance(value, dict):
        return any(not str(k).startswith("_") for k in value)
    return value not in (None, "", [])


def _duration(seconds: float) -> str:
    seconds = int(abs(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min"
    return f"{secs} s"


@register.filter
def time_left(deadline: datetime | None) -> str:
    """``1 h 59 min left``, ``overdue by 3 min``; empty without a deadline. The page's script
    keeps it current."""
    if deadline is None:
        return ""
    seconds = (deadline - timezone.now()).total_seconds()
    if seconds <= 0:
        return f"overdue by {_duration(seconds)}"
    return f"{_duration(seconds)} left"


@register.filter
def deadline_tone(deadline: datetime | None) -> str:
    if deadline is None:
        return "neutral"
    seconds = (deadline - timezone.now()).total_seconds()
    if seconds <= 0:
        return "danger"
    return "waiting" if seconds < 3600 else "neutral"


@register.filter
def status_tone(status: str) -> str:
    return _STATUS_TONES.get(str(status), "neutral")


@register.filter
def outcome(suspension: Any) -> str:
    return selectors.suspension_outcome(suspension)


@register.filter
def outcome_label(outcome_key: str) -> str:
    return selectors.OUTCOME_LABELS.get(outcome_key, outcome_key)


@register.filter
def outcome_tone(outcome_key: str) -> str:
    return _OUTCOME_TONES.get(outcome_key, "neutral")


@register.filter
def comment_of(suspension: Any) -> str:
    return selectors.decision_comment(suspension)


@register.filter
def summary(data: Any, limit: int = 3) -> list[tuple[str, Any]]:
    """The first few scalar fields of suspend data, for one-line previews in lists."""
    if not isinstance(data, dict):
        return []
    pairs = [
        (humanize_key(k), v)
        for k, v in data.items()
        if not str(k).startswith("_") and not isinstance(v, dict | list) and v not in ("", None)
    ]
    return pairs[: int(limit)]


@register.filter
def scalar(value: Any) -> SafeString:
    return _scalar(value)


@register.simple_tag
def deadline_attr(deadline: datetime | None) -> SafeString:
    if deadline is None:
        return mark_safe("")
    return format_html(' data-deadline="{}"', deadline.isoformat())


@register.filter
def when(value: datetime | None) -> SafeString:
    """A timestamp as ``26 Nov 2026, 14:05 UTC`` in a ``<time>`` element."""
    if value is None:
        return format_html('<span class="muted">{}</span>', "—")
    local = timezone.localtime(value)
    return format_html(
        '<time datetime="{}">{}</time>',
        value.isoformat(),
        f"{local.day} {local:%b %Y, %H:%M} {local.tzname() or ''}".strip(),
    )


@register.filter
def short_id(value: Any) -> str:
    return str(value)[:8]


@register.filter
def approval_title(suspension: Any) -> str:
    """The ``_form``'s title when it has one, else the step key made readable."""
    data = suspension.data if isinstance(suspension.data, dict) else {}
    form = data.get("_form")
    if isinstance(form, dict) and form.get("title"):
        return str(form["title"])
    return humanize_key(suspension.step_key)
