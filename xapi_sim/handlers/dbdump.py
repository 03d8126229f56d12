"""``GET /pool/xmldbdump``: the pool database in xapi's XML format.

``Pool_db_backup.pull_database_backup_handler`` (xen-api ``dundee-lcm``), registered as
``get_pool_xml_db_sync``: ``Xapi_http.assert_credentials_ok`` first (401 without valid
credentials), then ``with_context`` and ``write_database``: headers ``200 OK`` with
``Connection: close`` and no length, then the database as ``Db_xml.To.fd`` writes it
(``playback_dump.xmldbdump_body``). A member holds no database in memory (``Db_ref.Remote``):
after its 200 headers, ``Database_not_in_memory`` makes ``Http_svr`` append a 500 page --
except during a rolling upgrade, when the minimal Miami database is written before the
database is looked at.
"""

from __future__ import annotations

from .. import playback_dump
from ..errors import internal
from ..wire import routes

POOL_XML_DB_SYNC = "/pool/xmldbdump"  # Constants.pool_xml_db_sync
XMLDBDUMP_REALM = "get_pool_xml_db_sync"  # its name in Datamodel.http_actions


@routes.get(POOL_XML_DB_SYNC)
def xmldbdump(req: routes.Request) -> None:
    host = req.host
    req.authenticate(XMLDBDUMP_REALM)
    head = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncache-control: no-cache, no-store\r\n\r\n"
    pool = host.pool
    with req.context("Dumping database as XML") as task:
        if host.is_master or rpu_in_progress(pool):
            body = playback_dump.xmldbdump_body(pool)
            return req.raw(head + body)
        task.fail(internal("Db_ref.Database_not_in_memory"))
        req.raw(head + routes.page_500("Db_ref.Database_not_in_memory"))


def rpu_in_progress(pool) -> bool:
    """``Helpers.rolling_upgrade_in_progress`` from the pool row."""
    row = pool.db.tables["pool"].get(pool.ref)
    return row is not None and "rolling_upgrade_in_progress" in row["other_config"]
