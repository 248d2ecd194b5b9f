"""The service layer: the one place the CLI (and the API, MCP and webhook edges) call.

:class:`~vmrunner.services.core.Services` is built once per process from the settings;
it owns the store and keeps every run (exec, workflow, systest) from the moment it is
accepted. Requests are typed and validated here, once (:mod:`.requests`). Importing this
package is cheap; each module loads what it needs.
"""
