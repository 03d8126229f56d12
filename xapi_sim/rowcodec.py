"""Rows as JSON: what the state dir and the cross-pool import send (JSON keeps neither
datetimes nor non-string map keys, so those are tagged ``{"$t": ...}`` / ``{"$m": [...]}``)."""

from __future__ import annotations

from .datamodel import Timestamp


def enc(v):
    t = type(v)
    if t is Timestamp:
        return {"$t": str(v)}
    if t is dict:
        if all(type(k) is str for k in v):
            return (
                {k: enc(x) for k, x in v.items()}
                if "$t" not in v and "$m" not in v
                else {"$m": [[k, enc(x)] for k, x in v.items()]}
            )
        return {"$m": [[k, enc(x)] for k, x in v.items()]}
    if t is list or t is tuple:
        return [enc(x) for x in v]
    return v


def dec(v):
    t = type(v)
    if t is dict:
        if "$t" in v and len(v) == 1:
            return Timestamp(v["$t"])
        if "$m" in v and len(v) == 1:
            return {k: dec(x) for k, x in v["$m"]}
        return {k: dec(x) for k, x in v.items()}
    if t is list:
        return [dec(x) for x in v]
    return v
