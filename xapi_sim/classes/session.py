"""The ``session.*`` messages. Mirrors xen-api ``ocaml/xapi/xapi_session.ml``; the machinery
they share with the dispatcher (authentication, creation, limits, eviction) is
``xapi_sim/sessions.py``."""

from __future__ import annotations

from ..dispatch import api
from ..errors import Failure
from ..sessions import (  # noqa: F401
    CHANGE_PASSWORD_REFUSED,
    LocalSessions,
    authenticate,
    create_session,
    destroy_session,
)


@api("session.login_with_password")
def login_with_password(call, uname, pwd, version="1.1", originator=""):
    host, world = call.host, call.world
    if not host.is_master:
        raise Failure("HOST_IS_SLAVE", host.pool.master.address)
    authenticate(world, host, uname, pwd)
    return create_session(call, uname, originator)


@api("session.slave_local_login_with_password")
def slave_local_login_with_password(call, uname, pwd):
    """Emergency-mode login on any host: only the local superuser, against this host's copy
    of its pool's password (CP-696); no ``HOST_IS_SLAVE``."""
    authenticate(call.world, call.host, uname, pwd)
    return call.world.service(LocalSessions).create(call.world, call.host)


@api("session.logout", "session.local_logout")
def logout(call):
    local = call.world.existing_service(LocalSessions)
    if local is not None and local.destroy(call.host, call.session):
        return
    destroy_session(call.world, call.db, call.session)


@api("session.change_password")
def change_password(call, old_pwd, new_pwd):
    """Root's new password for every host of the pool this session's host is in (the
    change on this host, then ``request_config_file_sync`` to the others). ``old_pwd`` is
    ignored, as in XAPI (CA-13567)."""
    row = call.db.tables["session"].get(call.session)
    if row is None:  # a local session has no row: Db.Session.get_is_local_superuser fails
        raise Failure("HANDLE_INVALID", "session", call.session)
    if not row["is_local_superuser"]:
        raise Failure(
            "USER_IS_NOT_LOCAL_SUPERUSER", f"Failed to change password for user {call.world.user}"
        )
    if new_pwd == "":
        raise Failure("CHANGE_PASSWORD_REJECTED", CHANGE_PASSWORD_REFUSED)
    call.pool.password = new_pwd


@api("session.get_all_subject_identifiers")
def get_all_subject_identifiers(call):
    return []


@api("session.logout_subject_identifier")
def logout_subject_identifier(call, sid):
    return None
