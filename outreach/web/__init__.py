"""Everything outreach shows as HTML: the Jinja templates and the one stylesheet shared by the
files it writes (the report, the outbox index) and the pages it serves, and the ASGI app behind
``outreach serve``.

Importing :mod:`outreach.web.templating` does not load Starlette; :mod:`outreach.web.app`
builds the app from one module per group of routes (``webhook``, ``unsubscribe``, …).
"""
