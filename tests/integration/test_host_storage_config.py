"""``host.set_iscsi_iqn`` / ``host.set_multipathing`` (8.0 on) and the other-config watcher
that keeps ``other_config:iscsi_iqn`` / ``:multipathing`` and the fields in step
(``Xapi_host_helpers.Configuration``) -- over the XenAPI package."""

from __future__ import annotations

from session_kit import failure, logged_in

WORLD = """
[[host]]
name_label = "h1"
cpu = "Haswell"
version = "{v}"
[[host]]
name_label = "h2"
cpu = "Haswell"
version = "{v}"
[[pool]]
name_label = "p"
master = "h1"
members = ["h2"]
"""


def test_setters_keep_the_legacy_keys_and_the_watcher_follows_them():
    with logged_in(WORLD.format(v="stockholm")) as (w, s):
        x = s.xenapi
        h1, h2 = x.host.get_by_name_label("h1")[0], x.host.get_by_name_label("h2")[0]
        rec = x.host.get_record(h1)
        assert rec["iscsi_iqn"] == rec["other_config"]["iscsi_iqn"] != ""
        x.host.set_iscsi_iqn(h1, "iqn.2024-01.com.example:h1")
        rec = x.host.get_record(h1)
        assert rec["iscsi_iqn"] == rec["other_config"]["iscsi_iqn"] == "iqn.2024-01.com.example:h1"
        assert failure(x.host.set_iscsi_iqn, h1, "") == ["INVALID_VALUE", "value", ""]
        x.host.set_multipathing(h1, True)
        rec = x.host.get_record(h1)
        assert rec["multipathing"] is True and rec["other_config"]["multipathing"] == "true"
        # edits of the legacy keys reach the fields, as XenCenter's older dialogs make them
        x.host.remove_from_other_config(h1, "multipathing")
        assert x.host.get_multipathing(h1) is True  # a deleted key changes nothing
        x.host.add_to_other_config(h1, "multipathing", "false")
        assert x.host.get_multipathing(h1) is False
        x.host.remove_from_other_config(h1, "multipathing")
        x.host.add_to_other_config(h1, "multipathing", "yes")  # not bool_of_string: ignored
        assert x.host.get_multipathing(h1) is False
        oc = x.host.get_other_config(h1)
        x.host.set_other_config(h1, {**oc, "iscsi_iqn": "iqn.2024-02.com.example:new"})
        assert x.host.get_iscsi_iqn(h1) == "iqn.2024-02.com.example:new"
        x.host.remove_from_other_config(h1, "iscsi_iqn")
        assert x.host.get_iscsi_iqn(h1) == "iqn.2024-02.com.example:new"
        # forwarded to the host
        x.sim.host_crash(h2)
        assert failure(x.host.set_multipathing, h2, True) == ["HOST_OFFLINE", h2]
        x.host.add_to_other_config(h2, "multipathing", "true")  # the watcher cannot reach it
        assert x.host.get_multipathing(h2) is False


def test_dundee_has_neither_field():
    with logged_in(WORLD.format(v="dundee")) as (w, s):
        x = s.xenapi
        h1 = x.host.get_by_name_label("h1")[0]
        assert "iscsi_iqn" not in x.host.get_record(h1)
        x.host.add_to_other_config(h1, "multipathing", "true")
        assert failure(x.host.set_multipathing, h1, True)[0] == "MESSAGE_METHOD_UNKNOWN"


def test_sched_gran_as_a_default_host_answers():
    with logged_in(WORLD.format(v="xcp-ng-8.3")) as (w, s):
        x = s.xenapi
        h1, h2 = x.host.get_by_name_label("h1")[0], x.host.get_by_name_label("h2")[0]
        assert x.host.get_sched_gran(h1) == "cpu"
        assert failure(x.host.set_sched_gran, h1, "core") == [
            "OPERATION_NOT_ALLOWED",
            "Disabled by xapi.conf",
        ]
        assert (
            failure(x.host.set_sched_gran, h1, "thread")[0] == "INTERNAL_ERROR"
        )  # no such enum value
        x.sim.host_crash(h2)
        assert failure(x.host.get_sched_gran, h2) == ["HOST_OFFLINE", h2]


def test_syslog_reconfigure_as_xen_orchestra_calls_it():
    """xo-server sets ``logging:syslog_destination`` then calls ``syslog_reconfigure``."""
    with logged_in(WORLD.format(v="stockholm")) as (w, s):
        x = s.xenapi
        h1, h2 = x.host.get_by_name_label("h1")[0], x.host.get_by_name_label("h2")[0]
        x.host.set_logging(h1, {"syslog_destination": "10.0.0.5"})
        assert x.host.syslog_reconfigure(h1) == ""
        assert x.host.get_logging(h1) == {"syslog_destination": "10.0.0.5"}
        x.sim.host_crash(h2)
        assert failure(x.host.syslog_reconfigure, h2) == ["HOST_OFFLINE", h2]
