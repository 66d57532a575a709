"""The approval console's views: they translate HTTP to services and selectors, nothing more."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


@login_required
def inbox(request: HttpRequest) -> HttpResponse:
    """The pending approvals (placeholder until the console lands)."""
    return render(request, "approvals/inbox.html")
