// The VMs view: power state, host, last_boot_CPU_flags as named features, and a
// "can run where" strip with XAPI's own answer for each host of the VM's pool.
import { h, parseFeatureset, hasBit, errorText, select } from "./dom.js";

function flagNames(model, flags) {
  const words = parseFeatureset(flags?.features);
  if (!words) return null;
  return model.features.features.filter((f) => hasBit(words, f.word, f.bit)).map((f) => f.name);
}

function strip(ctx, conn, vmRef) {
  const { model } = ctx;
  const answers = conn.canRun[vmRef] || {};
  return h("ul", { class: "canrun", "aria-label": "can run where" }, conn.hostRefs().map((hr) => {
    const name = conn.objs.host[hr].name_label;
    const a = answers[hr];
    if (!a) return h("li", { class: "pending", "data-host": name }, h("span", { "aria-hidden": "true" }, "… "), `${name}: checking`);
    if (a.ok) {
      return h("li", { class: a.here ? "here" : "yes", "data-host": name },
        h("span", { "aria-hidden": "true" }, a.here ? "● " : "✓ "), `${name}: ${a.text}`);
    }
    const text = a.error ? errorText(a.error, model) : a.text;
    return h("li", { class: "no", "data-host": name, title: a.error ? a.error.join(" ") : a.text },
      h("span", { "aria-hidden": "true" }, "✗ "), `${name}: `, h("span", { class: "reason" }, text));
  }));
}

function vmRow(ctx, conn, ref) {
  const { model, ui, act } = ctx;
  const vm = conn.objs.VM[ref];
  const name = vm.name_label;
  const host = conn.objs.host[vm.resident_on]?.name_label || "—";
  const names = flagNames(model, vm.last_boot_CPU_flags);
  const vendor = vm.last_boot_CPU_flags?.vendor || "";
  const v = (method, ...args) => () => act(`${method} ${name}`, () => conn.api(method, ref, ...args));
  const hostOpts = conn.hostRefs().map((r) => ({ value: r, label: conn.objs.host[r].name_label }));
  const key = `mig:${ref}`;
  return h("tr", { "data-vm": name },
    h("th", { scope: "row" }, name),
    h("td", { class: "power" }, vm.power_state),
    h("td", { class: "vmhost" }, host),
    h("td", { class: "flags" }, names === null ? (vendor ? `${vendor}, no features` : "none (never booted)") :
      h("details", null, h("summary", null, `${vendor} · ${names.length} features`), h("p", { class: "names" }, names.join(" ")))),
    h("td", null, strip(ctx, conn, ref)),
    h("td", { class: "actions" },
      h("button", { onclick: v("VM.start", false, false), "data-key": `start:${ref}` }, "Start"),
      h("button", { onclick: v("VM.clean_shutdown"), "data-key": `stop:${ref}` }, "Shut down"),
      h("button", { onclick: v("VM.suspend"), "data-key": `susp:${ref}` }, "Suspend"),
      h("button", { onclick: v("VM.resume", false, false), "data-key": `res:${ref}` }, "Resume"),
      h("span", { class: "migrate" },
        select(ui, key, hostOpts, `migrate ${name} to`),
        h("button", {
          "data-key": `migbtn:${ref}`,
          onclick: () => {
            const dest = ui.inputs[key];
            return act(`VM.pool_migrate ${name} → ${conn.objs.host[dest]?.name_label}`, () => conn.api("VM.pool_migrate", ref, dest, {}));
          },
        }, "Migrate"))));
}

export function vmsView(ctx) {
  const { model } = ctx;
  const sections = [];
  for (const p of model.world.pools) {
    const conn = model.connOfPool(p.ref);
    if (!conn) continue;
    const vms = conn.guestRefs();
    if (!vms.length) continue;
    const title = p.hosts.length === 1 ? `Standalone host ${p.hosts[0].name_label}` : `Pool ${p.name_label}`;
    sections.push(h("section", { class: "pool", "aria-label": `${title} VMs` },
      h("h2", null, title),
      h("div", { class: "scroll" }, h("table", { class: "vms" },
        h("thead", null, h("tr", null, ["VM", "Power state", "Host", "last_boot_CPU_flags", "Can run where", "Controls"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", null, vms.map((r) => vmRow(ctx, conn, r)))))));
  }
  return h("div", null,
    h("p", { class: "note" }, "Halted VMs: VM.assert_can_boot_here. Running and suspended VMs: VM.assert_can_migrate to each host (the check of a live migration, CPU features included)."),
    sections.length ? sections : h("p", null, "No VMs."));
}
