// The World view: every pool (standalone hosts too), its hosts, and the alerts feed.
import { h, gib } from "./dom.js";

const yesno = (b) => (b ? "yes" : "no");

function hostRow(ctx, pool, wh, conn) {
  const { model, act } = ctx;
  const row = conn?.objs.host[wh.ref];
  const m = row ? conn.objs.host_metrics[row.metrics] : null;
  const info = row?.cpu_info || {};
  const total = m ? Number(m.memory_total) : null;
  const free = conn?.free[wh.ref];
  const vms = row ? row.resident_VMs.filter((r) => conn.objs.VM[r] && !conn.objs.VM[r].is_control_domain).length : "?";
  const up = wh.state === "up";
  const live = m ? m.live : false;
  const name = wh.name_label;
  const hostCall = (label, method) => () => act(`${method} ${name}`, () => conn.api(method, wh.ref));
  const actions = [
    row && row.enabled ? h("button", { onclick: hostCall("Disable", "host.disable"), "data-key": `dis:${wh.ref}` }, "Disable")
      : h("button", { onclick: hostCall("Enable", "host.enable"), "data-key": `en:${wh.ref}` }, "Enable"),
    h("button", { onclick: hostCall("Reboot", "host.reboot"), "data-key": `reb:${wh.ref}` }, "Reboot"),
    up ? h("button", { onclick: () => act(`sim.host_crash ${name}`, () => model.control("sim.host_crash", wh.ref)), "data-key": `crash:${wh.ref}` }, "Crash")
      : h("button", { onclick: () => act(`sim.host_power_on ${name}`, () => model.control("sim.host_power_on", wh.ref)), "data-key": `on:${wh.ref}` }, "Power on"),
    wh.master ? null : h("button", { onclick: () => act(`pool.eject ${name}`, () => conn.api("pool.eject", wh.ref)), "data-key": `ej:${wh.ref}` }, "Eject"),
  ];
  const state = up ? (live ? "● up" : "◐ up, not live") : wh.state === "crashed" ? "✗ crashed" : "○ shut down";
  return h("tr", { "data-host": name },
    h("th", { scope: "row" }, name),
    h("td", null, wh.master ? "master" : "member"),
    h("td", { class: `state-${wh.state}` }, state),
    h("td", null, row?.software_version?.product_version || "?"),
    h("td", null, info.modelname || "?"),
    h("td", null, info.vendor || "?"),
    h("td", null, info.socket_count ? `${info.socket_count} × ${Number(info.cpu_count) / Number(info.socket_count)} = ${info.cpu_count}` : "?"),
    h("td", { class: "enabled" }, row ? yesno(row.enabled) : "?"),
    h("td", { class: "live" }, m ? yesno(live) : "?"),
    h("td", null, total !== null && free !== undefined && free !== null ? `${gib(total - free)} / ${gib(free)}` : "?"),
    h("td", { class: "num" }, vms),
    h("td", { class: "actions" }, actions),
  );
}

function poolSection(ctx, p) {
  const conn = ctx.model.connOfPool(p.ref);
  const master = p.hosts.find((x) => x.master);
  const members = p.hosts.filter((x) => !x.master).map((x) => x.name_label);
  const standalone = p.hosts.length === 1;
  const title = standalone ? `Standalone host ${master.name_label}` : `Pool ${p.name_label || "(unnamed)"}`;
  return h("section", { class: "pool", "aria-label": title },
    h("h2", null, title),
    h("p", { class: "meta" },
      `master ${master.name_label}`,
      members.length ? `; members ${members.join(", ")}` : "; no members",
      " · RPU mode: ", h("strong", null, p.rolling_upgrade ? "rolling upgrade in progress" : "off"),
      conn?.error ? h("span", { class: "warn" }, ` · master not answering: ${conn.error.message}`) : ""),
    h("div", { class: "scroll" }, h("table", { class: "hosts" },
      h("thead", null, h("tr", null, ["Host", "Role", "State", "Release", "CPU model", "Vendor",
        "Sockets × cores", "Enabled", "Live", "Memory used / free", "VMs", "Controls"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", null, p.hosts.map((wh) => hostRow(ctx, p, wh, conn))))),
  );
}

function alerts(ctx) {
  const { model } = ctx;
  const msgs = [];
  for (const c of model.conns.values()) {
    for (const [ref, m] of Object.entries(c.objs.message)) msgs.push({ ref, ...m });
  }
  const byUuid = {};
  for (const c of model.conns.values()) {
    for (const cls of ["host", "VM", "pool"]) {
      for (const r of Object.values(c.objs[cls])) byUuid[r.uuid] = r.name_label || cls;
    }
  }
  msgs.sort((a, b) => String(b.timestamp).localeCompare(String(a.timestamp)));
  return h("section", { class: "alerts", "aria-label": "Alerts" },
    h("h2", null, "Alerts (messages, newest first)"),
    msgs.length === 0 ? h("p", null, "No messages yet.") :
      h("ol", { class: "feed" }, msgs.slice(0, 50).map((m) => h("li", null,
        h("time", null, m.timestamp), " ",
        h("strong", null, m.name), ` (priority ${m.priority}, ${m.cls} ${byUuid[m.obj_uuid] || m.obj_uuid}): `,
        m.body))));
}

export function worldView(ctx) {
  const pools = ctx.model.world.pools;
  return h("div", null, pools.map((p) => poolSection(ctx, p)), alerts(ctx));
}
