"""The web dashboard of ``vmrunner serve``: server-rendered pages (Jinja2) kept live with
htmx (vendored in ``static/``; nothing is fetched at run time) and server-sent events.
``mount(app, services)`` adds its routes; see :mod:`vmrunner.dashboard.routes`."""

from vmrunner.dashboard.routes import mount

__all__ = ["mount"]
