// Controls that need a form: hardware, new hosts, joining, releases, injected faults.
// Each button is one control-API or XAPI call; the outcome line shows XAPI's answer.
import { h, select, input } from "./dom.js";

const VERSIONS = ["7.0.0", "6.5.0"];

function allHosts(model) {
  const out = [];
  for (const p of model.world.pools) for (const wh of p.hosts) out.push({ value: wh.ref, label: wh.name_label });
  return out.sort((a, b) => a.label.localeCompare(b.label));
}

function fieldset(legend, ...children) {
  return h("fieldset", null, h("legend", null, legend), ...children);
}

const lbl = (text, el) => h("label", null, `${text} `, el);

function hardware(ctx) {
  const { model, ui, act } = ctx;
  const hosts = allHosts(model);
  const cpus = [{ value: "", label: "(keep)" }, ...model.features.models.map((m) => ({ value: m.name, label: `${m.name} — ${m.vendor}` }))];
  const stage = () => {
    const host = ui.inputs["hw-host"];
    const changes = {};
    if (ui.inputs["hw-cpu"]) changes.cpu = ui.inputs["hw-cpu"];
    const raw = (ui.inputs["hw-hidden"] || "").trim();
    const hidden = raw.split(/[\s,]+/).filter(Boolean);
    if (raw === "none") changes.hidden_features = [];
    else if (hidden.length) changes.hidden_features = hidden;
    return act(`sim.host_set_hardware ${model.nameOf(host) || host} ${JSON.stringify(changes)}`,
      () => model.control("sim.host_set_hardware", host, changes));
  };
  const hostCall = (method) => () => {
    const host = ui.inputs["hw-host"];
    const f = model.findHost(host);
    return act(`${method} ${f?.host.name_label}`, () => f.conn.api(method, host));
  };
  return fieldset("Change a host's CPU or hidden features (takes effect at its next xapi start)",
    lbl("Host", select(ui, "hw-host", hosts, "host")),
    lbl("CPU model", select(ui, "hw-cpu", cpus, "CPU model")),
    lbl("Hidden features", input(ui, "hw-hidden", "hidden features", "", { placeholder: "e.g. avx, aes; none: unhide all" })),
    h("button", { "data-key": "hw-stage", onclick: stage }, "Stage hardware"),
    h("button", { "data-key": "hw-disable", onclick: hostCall("host.disable") }, "Disable"),
    h("button", { "data-key": "hw-reboot", onclick: hostCall("host.reboot") }, "Reboot"),
    h("button", { "data-key": "hw-enable", onclick: hostCall("host.enable") }, "Enable"),
    h("p", { class: "hint" }, "host.reboot needs the host disabled and without running VMs (migrate or shut them down first)."));
}

function addHost(ctx) {
  const { model, ui, act } = ctx;
  const cpus = model.features.models.map((m) => ({ value: m.name, label: `${m.name} — ${m.vendor}` }));
  return fieldset("Add a host (standalone, on its own endpoint)",
    lbl("Name", input(ui, "add-name", "new host name", "xs6")),
    lbl("CPU model", select(ui, "add-cpu", cpus, "new host CPU")),
    lbl("Release", select(ui, "add-version", VERSIONS.map((v) => ({ value: v, label: v })), "new host release")),
    h("button", {
      "data-key": "add-go",
      onclick: () => act(`sim.add_host ${ui.inputs["add-name"]}`, () => model.control("sim.add_host", {
        name_label: ui.inputs["add-name"], cpu: ui.inputs["add-cpu"], version: ui.inputs["add-version"],
      })),
    }, "Add host"));
}

function join(ctx) {
  const { model, ui, act } = ctx;
  const single = model.world.pools.filter((p) => p.hosts.length === 1).map((p) => ({ value: p.hosts[0].ref, label: p.hosts[0].name_label }));
  const pools = model.world.pools.map((p) => {
    const m = p.hosts.find((x) => x.master);
    return { value: m.ref, label: p.hosts.length === 1 ? `${m.name_label} (standalone)` : `${p.name_label} (master ${m.name_label})` };
  });
  const go = (method) => () => {
    const joiner = model.findHost(ui.inputs["join-host"]);
    const master = model.findHost(ui.inputs["join-pool"]);
    return act(`${method} ${joiner?.host.name_label} → ${master?.host.name_label}`,
      () => joiner.conn.api(method, master.host.address, model.user, model.password));
  };
  return fieldset("Join a standalone host to a pool (called on the joining host, with the master's address)",
    lbl("Host", select(ui, "join-host", single, "joining host")),
    lbl("Pool", select(ui, "join-pool", pools, "pool to join")),
    h("button", { "data-key": "join-go", onclick: go("pool.join") }, "Join"),
    h("button", { "data-key": "join-force", onclick: go("pool.join_force") }, "Join (force)"),
    h("p", { class: "hint" }, "Eject a member with its Eject button in the World view."));
}

function install(ctx) {
  const { model, ui, act } = ctx;
  return fieldset("Install another release on a host (disable it and move its VMs off first)",
    lbl("Host", select(ui, "inst-host", allHosts(model), "host to install")),
    lbl("Release", select(ui, "inst-version", VERSIONS.map((v) => ({ value: v, label: v })), "release")),
    h("button", {
      "data-key": "inst-go",
      onclick: () => act(`sim.host_install ${model.nameOf(ui.inputs["inst-host"])} ${ui.inputs["inst-version"]}`,
        () => model.control("sim.host_install", ui.inputs["inst-host"], ui.inputs["inst-version"])),
    }, "Install"));
}

function faults(ctx) {
  const { model, ui, act } = ctx;
  const add = () => {
    const rule = { method: ui.inputs["f-method"] };
    if (ui.inputs["f-code"]) rule.code = ui.inputs["f-code"];
    const params = (ui.inputs["f-params"] || "").split(",").map((s) => s.trim()).filter(Boolean);
    if (params.length) rule.params = params;
    if (ui.inputs["f-count"]) rule.count = Number(ui.inputs["f-count"]);
    return act(`sim.fault_add ${JSON.stringify(rule)}`, () => model.control("sim.fault_add", rule));
  };
  return fieldset("Inject a fault (calls matching the method fail with the XAPI error)",
    lbl("Method", input(ui, "f-method", "fault method", "VM.pool_migrate")),
    lbl("Error code", input(ui, "f-code", "fault error code", "VM_MIGRATE_FAILED")),
    lbl("Parameters", input(ui, "f-params", "fault parameters", "{self}, , {arg1}, link down")),
    lbl("Count", input(ui, "f-count", "fault count", "1", { type: "number", min: "0" })),
    h("button", { "data-key": "f-add", onclick: add }, "Add rule"),
    h("button", { "data-key": "f-clear", onclick: () => act("sim.fault_clear (all)", () => model.control("sim.fault_clear", "")) }, "Clear all"),
    model.faults.length ? h("ul", { class: "faults" }, model.faults.map((r) => h("li", null,
      `#${r.id} ${r.method || r.class || "*"} → ${r.code || "delay"} (hits ${r.hits}, seen ${r.seen}) `,
      h("button", { "data-key": `f-del:${r.id}`, onclick: () => act(`sim.fault_clear ${r.id}`, () => model.control("sim.fault_clear", r.id)) }, "Clear")))) :
      h("p", { class: "hint" }, "No fault rules."));
}

export function controlsView(ctx) {
  return h("div", { class: "controls" }, hardware(ctx), addHost(ctx), join(ctx), install(ctx), faults(ctx),
    h("p", { class: "hint" }, "Host power, enable/disable and eject are in the World view; VM start, stop, suspend and migrate in the VMs view."));
}
