"""Pure formatting of the xe server side (cli_printer.ml, record_util.ml, cli_util.ml):
``xapi_sim/xe_server/render.py``."""

from xapi_sim.errors import ERRORS
from xapi_sim.wire import cliproto as P
from xapi_sim.xe_server import render as R

# -- record layout ---------------------------------------------------------------------------


def test_record_first_key_left_others_right_aligned():
    pairs = [("uuid ( RO)", "0f8a"), ("name-label ( RW)", "vm1"), ("power-state ( RO)", "running")]
    assert R.record_text(pairs) == (
        "uuid ( RO)           : 0f8a\n     name-label ( RW): vm1\n    power-state ( RO): running\n"
    )


def test_record_block_ends_with_two_empty_lines():
    text = R.record_block([("uuid ( RO)", "x")])
    assert text == "uuid ( RO)    : x\n\n\n"


def test_bare_map_keys_as_in_host_cpu_info():
    text = R.record_text([("cpu_count", "8"), ("socket_count", "1"), ("vendor", "GenuineIntel")])
    assert text.splitlines() == [
        "cpu_count       : 8",
        "    socket_count: 1",
        "          vendor: GenuineIntel",
    ]


def test_empty_values_keep_the_space_after_the_colon():
    assert (
        R.record_text([("uuid ( RO)", "u"), ("name-label ( RW)", "")]).splitlines()[1]
        == "    name-label ( RW): "
    )


def test_empty_record():
    assert R.record_text([]) == "\n"


def test_field_keys():
    assert R.field_key("uuid", "", False) == "uuid ( RO)"
    assert R.field_key("name-label", "", True) == "name-label ( RW)"
    assert R.field_key("tags", "set", True) == "tags (SRW)"
    assert R.field_key("capabilities", "set", False) == "capabilities (SRO)"
    assert R.field_key("other-config", "map", True) == "other-config (MRW)"
    assert R.field_key("cpu_info", "map", False) == "cpu_info (MRO)"
    assert R.field_key("ha-always-run", "", True, True) == "ha-always-run ( RW) [DEPRECATED]"


# -- values ----------------------------------------------------------------------------------


def test_values():
    assert R.bool_str(True) == "true" and R.bool_str(False) == "false"
    assert R.int_str(4294967296) == "4294967296"
    assert R.float_str(1) == "1.000" and R.float_str(2394.4539) == "2394.454"
    assert R.power_state("Running") == "running" and R.power_state("Halted") == "halted"
    assert R.power_state("Suspended") == "suspended" and R.power_state("Paused") == "paused"
    assert R.set_str(["a", "b", "c"]) == "a; b; c"
    assert R.map_str({"k1": "v1", "k2": "v2"}) == "k1: v1; k2: v2"
    assert R.map_str({}) == ""


def test_ocaml_float():
    assert R.ocaml_float(10.0) == "10."
    assert R.ocaml_float(2.5) == "2.5"


def test_refs():
    index = {
        "OpaqueRef:a": ("uuid-a", "vm1"),
        "OpaqueRef:p": ("uuid-p", ""),
        "OpaqueRef:t": ("uuid-t", None),
    }
    lookup = index.get
    assert R.ref_uuid(lookup, "OpaqueRef:a") == "uuid-a"
    assert R.ref_uuid(lookup, "OpaqueRef:NULL") == "<not in database>"
    assert R.ref_uuid(lookup, "OpaqueRef:gone") == "<not in database>"
    assert R.ref_convert(lookup, "OpaqueRef:a") == "uuid-a (vm1)"
    assert R.ref_convert(lookup, "OpaqueRef:p") == "uuid-p ()"
    assert R.ref_convert(lookup, "OpaqueRef:t") == "uuid-t"
    assert R.ref_convert(lookup, "OpaqueRef:gone") == "OpaqueRef:gone"
    assert R.ref_convert(lookup, "halted") == "halted"


# -- printer ---------------------------------------------------------------------------------


def _printer(minimal):
    out = []
    return R.Printer(out.append, minimal), out


def test_printer_table_sends_one_print_per_record():
    p, out = _printer(False)
    p.table([[("uuid ( RO)", "a")], [("uuid ( RO)", "b")]])
    p.flush()
    assert out == [P.Print("uuid ( RO)    : a\n\n"), P.Print("uuid ( RO)    : b\n\n")]


def test_printer_minimal_first_field_comma_joined_and_escaped():
    p, out = _printer(True)
    p.table([[("name-label ( RW)", "a,b"), ("x", "y")], [("name-label ( RW)", "c\\d")]])
    p.msg("dropped")
    p.stderr("dropped too")
    assert out == []
    p.flush()
    assert out == [P.Print("a\\,b,c\\\\d")]


def test_printer_minimal_no_match_prints_empty_line():
    p, out = _printer(True)
    p.table([])
    p.flush()
    assert out == [P.Print("")]


def test_printer_minimal_buffers_in_reverse_order_like_xapi():
    p, out = _printer(True)
    p.lines(["first"])
    p.lines(["second"])
    p.flush()
    assert out == [P.Print("second,first")]


def test_printer_lines_msg_stderr():
    p, out = _printer(False)
    p.lines(["a", "b"])
    p.msg("m")
    p.stderr("e")
    assert out == [P.Print("a"), P.Print("b"), P.Print("m"), P.PrintStderr("e\n")]


# -- errors ----------------------------------------------------------------------------------


def test_server_error_with_refs_rendered_as_uuid_and_name():
    lookup = {"OpaqueRef:v": ("0f8a", "vm1"), "OpaqueRef:h": ("6e3f", "xs2")}.get
    lines = R.server_error_lines(
        "VM_INCOMPATIBLE_WITH_THIS_HOST",
        [
            "OpaqueRef:v",
            "OpaqueRef:h",
            "VM last booted on a CPU with features this host's CPU does not have.",
        ],
        ERRORS,
        lookup,
    )
    assert lines == [
        "The VM is incompatible with the CPU features of this host.",
        "vm: 0f8a (vm1)",
        "host: 6e3f (xs2)",
        "reason: VM last booted on a CPU with features this host's CPU does not have.",
    ]


def test_server_error_extra_and_missing_params():
    assert R.server_error_lines("HOSTS_NOT_HOMOGENEOUS", ["CPUs differ", "more"], ERRORS) == [
        "The hosts in this pool are not homogeneous.",
        "reason: CPUs differ",
        "<extra>: more",
    ]
    assert R.server_error_lines("UUID_INVALID", ["VM"], ERRORS) == [
        "The uuid you supplied was invalid.",
        "type: VM",
        "uuid: <unknown>",
    ]


def test_unknown_code_is_a_client_rendered_error():
    cmds = R.server_error_commands("Missing parameter", ["last_boot_CPU_flags"], ERRORS)
    assert cmds == [P.Error("Missing parameter", ["last_boot_CPU_flags"])]


def test_server_error_commands_go_to_stderr():
    cmds = R.server_error_commands("HOST_IS_SLAVE", ["10.0.0.1"], ERRORS)
    assert cmds == [
        P.PrintStderr(ERRORS["HOST_IS_SLAVE"][1] + "\n"),
        P.PrintStderr("Master IP address: 10.0.0.1\n"),
    ]


def test_param_error():
    assert R.param_error("Unknown command", "x") == [
        P.PrintStderr("Unknown command: x\n"),
        P.PrintStderr("For usage run: 'xe help'\n"),
    ]
    assert R.param_error("", "Authentication failed")[0] == P.PrintStderr("Authentication failed\n")


def test_make_list_wraps_after_74_columns():
    names = [f"command-{i:02d}" for i in range(12)]
    lines = R.make_list(names)
    assert all(line.startswith("    ") for line in lines)
    assert all(len(line) <= 74 + 12 for line in lines)
    assert ", ".join(x.strip() for x in lines) == ", ".join(names)
    assert R.make_list([""]) == ["    "]
