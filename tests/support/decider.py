"""A second process that decides suspensions at planned moments (the decision side of the
timeout races): ``python -m tests.support.decider PLAN RESULTS``.

PLAN is a JSON list of ``{"execution_id", "step_key", "at"}`` (``at``: ISO time to decide at);
RESULTS gets, per execution id, ``"won"`` or the status that beat the decision.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from uuid import UUID


def main(plan_path: str, results_path: str) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "polos_site.settings")
    import django

    django.setup()

    from workflows import services
    from workflows.errors import SuspensionNotPending

    plan = sorted(json.loads(Path(plan_path).read_text()), key=lambda item: item["at"])
    results: dict[str, str] = {}
    for item in plan:
        delay = datetime.fromisoformat(item["at"]).timestamp() - time.time()
        if delay > 0:
            time.sleep(delay)
        try:
            services.suspension_resolve(
                execution_id=UUID(item["execution_id"]),
                step_key=item["step_key"],
                data={"approved": True, "comment": "decided by the racing process"},
            )
            results[item["execution_id"]] = "won"
        except SuspensionNotPending as exc:
            results[item["execution_id"]] = str(exc.status)
    Path(results_path).write_text(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
