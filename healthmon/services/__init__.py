"""Use cases: the one layer every front door (pages, CLI, API, job worker) calls.

Only modules here open database sessions, check permissions (``accounts.require``) and
write audit entries. Each module is one use case: ``accounts``, ``notes``, ``cases``,
``explanations``, ``versions``, ``retrain``, ``vitals``, ``advice``, ``patients``, ``reports``,
``tokens`` (API tokens); ``jobs`` is the job queue and its typed payloads, ``worker`` the loop
that runs them, and ``database`` connects a process to its database.
"""
