"""How polos_run stops: cleanly on SIGTERM, and with a failure when a service child dies."""

from __future__ import annotations

import os
import signal

from django.conf import settings

from tests.support.processes import child_pids, polos_run, wait_until


def test_sigterm_stops_everything_with_exit_code_zero(transactional_db: None) -> None:
    with polos_run(args=["--no-demo-user"], expect_clean_exit=False) as server:
        children = child_pids(server.child.pid)

        code = server.child.stop(signal.SIGTERM)

        assert code == 0, server.output()
        assert "Polos stopped." in server.output()
    if settings.EMBEDDED:
        assert children == {}
    else:
        # The worker and beat children are gone too.
        assert not any(os.path.exists(f"/proc/{pid}") for pid in children)


def test_a_dead_worker_stops_polos_run_with_a_failure(transactional_db: None) -> None:
    if settings.EMBEDDED:
        # One process, no child to lose: the worker is a thread (the test above checks that
        # polos_run has no children in this mode).
        return
    with polos_run(args=["--no-demo-user"], expect_clean_exit=False) as server:
        [worker] = [
            pid for pid, cmd in child_pids(server.child.pid).items() if " worker " in f"{cmd} "
        ]

        os.kill(worker, signal.SIGKILL)

        wait_until(lambda: server.child.process.poll() is not None, timeout=30, what="exit")
        assert server.child.process.returncode != 0
        assert "celery worker" in server.output() and "exited unexpectedly" in server.output()
