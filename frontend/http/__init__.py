"""The FE's HTTP port: the operator's web surface.

* ``/healthz`` (503 while stopping) and Prometheus ``/metrics``, unauthenticated;
* Doris-compatible REST in Doris's envelope ``{"msg": "success", "code": 0, "data": ...}``:
  ``GET /rest/v1/session``, ``/rest/v1/session/all``,
  ``GET /rest/v2/manager/query/current_queries``, ``POST /rest/v2/manager/query/kill/{query_id}``,
  ``GET /rest/v2/manager/query/trace_id/{trace_id}``;
* our own: ``POST /api/sessions/{connection_id}/kill?kind=connection|query``, ``GET /api/cluster``
  (what the page shows) and ``GET /api/audit`` (admins);
* the sessions page at ``/`` (static files in ``frontend/web/``) and ``/openapi.json``.

Its rooms:

* ``protocol`` — HTTP/1.1 framing and its limits (our own small parser);
* ``admission`` — who may hold a connection (idle sockets never starve ``/healthz`` or an admin);
* ``api`` — routes, handlers, basic auth (throttled by ``frontend.throttle``), the cross-site check;
* ``openapi`` — the OpenAPI document, as data;
* ``ops`` — :class:`WebOps`, what the server asks of its FE, and :class:`FeWebOps` over the FE's parts;
* ``server`` — :class:`HttpListener`, the connection loop.
"""

from frontend.http.ops import FeWebOps, HttpSettings, WebOps, render_metrics
from frontend.http.server import HttpListener

__all__ = ["FeWebOps", "HttpListener", "HttpSettings", "WebOps", "render_metrics"]
