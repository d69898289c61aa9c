"""The processes: one warm-up as an asyncio program (``prime``, and each primer of ``run``), the
long-lived ``run`` supervisor and open run with the shell they share, the hand-overs between
them, publishing, and signals.

Rule: carries out what ``decide/`` says and decides nothing itself; imports ``serve/``,
``report/``, ``traffic/``, ``config/``, ``decide/`` and ``kernel/``, never ``kube/``, ``paths/``,
``demo/`` or ``cli/``. The long-lived processes (``supervisor.py``, ``open_run.py``, ``shell.py``,
``handover.py``) import only the standard library, prometheus_client and small modules.
"""
