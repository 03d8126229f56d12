"""``event-wait``: block until an object of a class satisfies ``field=value`` conditions.

Mirrors xen-api Dundee ``cli_operations.ml`` ``event_wait`` (``event.register`` /
``event.next``, re-registering after EVENTS_LOST) and ``cli_frontend.ml``.
"""

from __future__ import annotations

from ...errors import Failure
from ..errors import CliFailure
from ..records import Record, make_record
from ..selectors import STDPARAMS
from .spec import Cmd

# event-wait classes with a CLI record here (XAPI also knows vdi, sr, network, vif, pif, vbd,
# pbd, task, subject, role and secret)
EVENT_CLASSES = {"vm": "VM", "host": "host", "pool": "pool"}


class _Finished(Exception):
    pass


def event_wait(ctx):
    classname = ctx.get("class")
    filters = []
    for k, v in ctx.params:
        if k in ["class"] + STDPARAMS:
            continue
        if v.startswith("/="):
            filters.append((False, k, v[2:]))
        else:
            filters.append((True, k, v))

    def matches(rec: Record) -> bool:
        names = {f.name: f for f in rec.fields}
        for eq, k, v in filters:
            if k not in names:
                raise CliFailure(f"key missing: {k}")
            val = names[k].value()
            if (v == val) != eq:
                return False
        return True

    cls = EVENT_CLASSES.get(classname)
    if cls is None:
        raise CliFailure(f"Cli listening for class '{classname}' not currently implemented")
    classes = [classname]
    ctx.call("event.register", classes)

    def poll():
        return any(matches(make_record(ctx, cls, r)) for r in ctx.call(f"{cls}.get_all"))

    try:
        if poll():
            return
        while True:
            try:
                events = ctx.call("event.next")
                for ev in events:
                    if ev.get("class") != classname or "snapshot" not in ev:
                        continue
                    if matches(make_record(ctx, cls, ev["ref"], ev["snapshot"])):
                        raise _Finished()
            except Failure as f:
                if f.code != "EVENTS_LOST":
                    raise
                ctx.call("event.unregister", classes)
                ctx.call("event.register", classes)
                if poll():
                    return
    except _Finished:
        return
    finally:
        try:
            ctx.call("event.unregister", classes)
        except Failure:
            pass  # the session ended meanwhile: its registration went with it


COMMANDS = {
    "event-wait": Cmd(
        ["class"],
        [],
        "Wait for the event that satisfies the conditions given on the command line.",
        event_wait,
    ),
}
