"""``GET /rrd_updates``, ``/host_rrd``, ``/vm_rrd`` and ``/sr_rrd``: the metrics rrdd serves
through xapi (``wire/rrd_http.py`` has the formats, parameters and statuses; docs/metrics.md).

Registered with the shared handler rules of ``wire/routes.py``, except that the credentials
are checked inside :func:`rrd_http.serve`: ``/vm_rrd`` for a VM running on the host is
answered before any credential check, as xapi hands the connection to rrdd first
(``rrdd_proxy.ml``).
"""

from __future__ import annotations

from ..wire import routes, rrd_http


def _serve(req: routes.Request) -> None:
    out = rrd_http.serve(
        req.host,
        req.route.path,
        req.query_string,
        lambda: routes.credentials_ok(req.host, req.headers, req.params),
        routes.page_401,
        lambda text: routes.page_500(routes.escape(text)),
    )
    req.raw(out)


for _path in rrd_http.LABELS:
    routes.get(_path)(_serve)
