# Two commands on a fresh machine (Python 3.11+, git, bash, make): `make run` and `make test`.
# uv lives in .tools/ (its own venv) so that `uv sync` never removes it from .venv.

SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
UV := .tools/bin/uv
UV_STAMP := .tools/.uv-$(UV_VERSION)
# Never download a Python: use the machine's.
export UV_PYTHON_DOWNLOADS := never

.PHONY: run test install chromium lint

run: install
	DJANGO_DEBUG=true .venv/bin/python manage.py polos_run

test: install chromium
	.venv/bin/python -m pytest $(PYTEST_ARGS)

install: $(UV_STAMP)
	$(UV) sync --locked --python $(PYTHON)

$(UV_STAMP):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "Python 3.11 or newer is needed ($(PYTHON) is older)"; exit 1; }
	rm -rf .tools
	$(PYTHON) -m venv .tools || { \
		[ "$$(id -u)" = 0 ] && apt-get update -q && apt-get install -y -q python3-venv \
		&& $(PYTHON) -m venv .tools; }
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	touch $@

# Debian's chromium for the browser tests (Playwright drives it; nothing is downloaded).
# Without root it is left alone: the browser tests then skip (and CI, which is root, fails).
chromium:
	@if ! command -v chromium >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	fi

lint: install
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy .
