"""Sessions. Mirrors xen-api ``ocaml/xapi/xapi_session.ml``: ``login_with_password`` checks the
root credentials (after ``HOST_IS_SLAVE`` on a pool member, before any password check), a
wrong password gives ``SESSION_AUTHENTICATION_FAILED [uname, "Authentication failure"]``
after a deliberate delay (5 s in XAPI; ``World.auth_failure_delay`` here); logout destroys
the session row and wakes any event wait on it.
"""
from __future__ import annotations

import time

from ..datamodel import NULL_REF
from ..dispatch import api
from ..errors import Failure


@api("session.login_with_password")
def login_with_password(call, uname, pwd, version="1.1", originator=""):
    host, world = call.host, call.world
    if not host.is_master:
        raise Failure("HOST_IS_SLAVE", host.pool.master.address)
    if uname != world.user or pwd != world.password:
        if world.auth_failure_delay:
            time.sleep(world.auth_failure_delay)
        raise Failure("SESSION_AUTHENTICATION_FAILED", uname, "Authentication failure")
    return create_session(call, uname, originator)


def create_session(call, uname, originator="", pool=False):
    from ..world import now_ts
    ts = now_ts()
    return call.world.new_row(
        call.db, "session", this_host=call.host.ref, this_user=NULL_REF, last_active=ts,
        pool=pool, other_config={}, is_local_superuser=True, subject=NULL_REF,
        validation_time=ts, auth_user_sid="", auth_user_name=uname, rbac_permissions=[],
        parent=NULL_REF, originator=originator)


@api("session.logout", "session.local_logout")
def logout(call):
    db = call.db
    with db.cond:
        if db.exists("session", call.session):
            db.remove("session", call.session)
        db.cond.notify_all()


@api("session.change_password")
def change_password(call, old_pwd, new_pwd):
    if old_pwd != call.world.password:
        raise Failure("SESSION_AUTHENTICATION_FAILED", call.world.user, "Authentication failure")
    call.world.password = new_pwd


@api("session.get_all_subject_identifiers")
def get_all_subject_identifiers(call):
    return []


@api("session.logout_subject_identifier")
def logout_subject_identifier(call, sid):
    return None
