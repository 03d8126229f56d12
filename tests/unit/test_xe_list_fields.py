"""``<class>-list`` builds only the fields it prints or filters on, one record at a time: its
output equals the listing made from complete records, for every kind of filter."""

from __future__ import annotations

import pytest

from xapi_sim import scenario
from xapi_sim.dispatch import Dispatcher
from xapi_sim.server import Simulator  # noqa: F401  -- registers every handler
from xapi_sim.xe_server import render as R
from xapi_sim.xe_server.commands import GENERATED
from xapi_sim.xe_server.context import Context
from xapi_sim.xe_server.errors import CliFailure
from xapi_sim.xe_server.selectors import STDPARAMS, all_records, filter_by, select_fields


@pytest.fixture(scope="module")
def env():
    world = scenario.build(scenario.default(), seed=1)
    d = Dispatcher(world)
    m = world.pools[0].master
    s = d.dispatch(m, "session.login_with_password", ["root", "xenroot"])
    vm = d.dispatch(m, "VM.get_by_name_label", [s, "web1"])[0]
    d.dispatch(m, "VM.add_to_other_config", [s, vm, "team", "blue"])
    d.dispatch(m, "VM.add_tags", [s, vm, "prod"])
    return d, m, s


def _run(env, cmds, params, complete):
    d, m, s = env
    out = []
    ctx = Context(d, m, s, params, R.Printer(out.append))
    if complete:  # the listing from complete records, as before field selection
        all_recs = all_records(ctx, cmds.cls)
        filters = [(p, v) for p, v in ctx.params if p not in ["params"] + STDPARAMS]
        records = filter_by(all_recs, list(cmds.def_filters) + filters)
        chosen = select_fields(
            ctx, all_recs if ctx.bool_param("all") else records, cmds.def_list_params
        )
        ctx.printer.table(
            [
                [(f.key(), R.EXPENSIVE) if f.expensive else f.printed() for f in fs if not f.hidden]
                for fs in chosen
            ]
        )
    else:
        cmds.list(ctx)
    ctx.printer.flush()
    return out


@pytest.mark.parametrize("which", range(len(GENERATED)))
@pytest.mark.parametrize(
    "params",
    [
        [],
        [("params", "all")],
        [("power-state", "running")],
        [("name-label", "web1"), ("params", "uuid,dom-id,other-config")],
        [("other-config:team", "blue")],
        [("other-config-team", "blue")],
        [("tags:contains", "prod"), ("params", "name-label,tags")],
        [("all", "true"), ("params", "uuid")],
        [("is-control-domain", "true")],
    ],
)
def test_listing_equals_the_complete_records(env, which, params):
    cmds = GENERATED[which]
    try:
        want = _run(env, cmds, params, complete=True)
    except CliFailure as e:
        with pytest.raises(CliFailure) as got:
            _run(env, cmds, params, complete=False)
        assert str(got.value) == str(e)
        return
    assert _run(env, cmds, params, complete=False) == want


def test_unknown_filter_fails_as_before(env):
    with pytest.raises(CliFailure, match="Unknown field 'no-such'"):
        _run(env, GENERATED[1], [("no-such", "x")], complete=False)
