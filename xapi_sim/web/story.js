// The guided story of docs/levelling.md on the default world, one button per step.
import { h, errorText } from "./dom.js";

const short = (fs) => (fs ? `${fs.split("-").slice(0, 6).join("-")}-…` : "?");

function lookup(model) {
  const hosts = {};
  let conn = null;
  for (const p of model.world.pools) for (const wh of p.hosts) hosts[wh.name_label] = { ...wh, conn: model.connOfPool(p.ref) };
  conn = hosts.xs1?.conn;
  const vms = {};
  if (conn) for (const r of conn.guestRefs()) vms[conn.objs.VM[r].name_label] = r;
  return { hosts, conn, vms };
}

async function levels(model) {
  const { hosts, conn } = lookup(model);
  const lines = [];
  for (const n of ["xs1", "xs2", "xs3"]) {
    const info = await conn.api("host.get_cpu_info", hosts[n].ref);
    lines.push(`${n} ${info.modelname}: ${short(info.features_hvm)}`);
  }
  const pool = (await conn.api("pool.get_all"))[0];
  lines.push(`pool level: ${short((await conn.api("pool.get_cpu_info", pool)).features_hvm)}`);
  return lines.join("\n");
}

const migrate = (vm, dest) => async (model) => {
  const { hosts, conn, vms } = lookup(model);
  await conn.api("VM.pool_migrate", vms[vm], hosts[dest].ref, {});
  return `${vm} is now resident on ${dest}`;
};

const join = (name) => async (model) => {
  const { hosts } = lookup(model);
  await hosts[name].conn.api("pool.join", hosts.xs1.address, model.user, model.password);
  return `${name} joined pool-a`;
};

export const STEPS = [
  {
    title: "1. Read each host's HVM featureset and the pool level",
    run: levels,
    why: "Broadwell ⊇ Haswell ⊇ Ivy Bridge feature-wise, so the pool level (pool.cpu_info) — the word-by-word AND of every host's set — is Ivy Bridge's set. See the Feature matrix: xs1 and xs2 have ▲ bits the level lacks.",
  },
  {
    title: "2. See which flags web1 booted with",
    run: async (model) => {
      const { conn, vms } = lookup(model);
      const flags = await conn.api("VM.get_last_boot_CPU_flags", vms.web1);
      const pool = (await conn.api("pool.get_all"))[0];
      const level = (await conn.api("pool.get_cpu_info", pool)).features_hvm;
      return `last_boot_CPU_flags = ${flags.vendor} ${short(flags.features)}\nequal to the pool level: ${flags.features === level}`;
    },
    why: "web1 runs on the Haswell xs1, but VM.start gave it the pool level, not its host's set.",
  },
  {
    title: "3. Migrate web1 to xs3, the oldest member",
    run: migrate("web1", "xs3"),
    why: "The check compares the VM's recorded set with xs3's features_hvm: the pool level fits every member, so the move is allowed.",
  },
  {
    title: "4. Join xs4 (Sandy Bridge) to pool-a",
    run: join("xs4"),
    why: "pool.join (called on xs4 with the master's address) compares only CPU vendors. At xs4's first start as a member its Sandy Bridge set entered the intersection: the pool level lost AVX2-era bits and a POOL_CPU_FEATURES_DOWN alert appeared (World view).",
  },
  {
    title: "5. Try to migrate web1 to xs4",
    run: migrate("web1", "xs4"),
    expectRefusal: true,
    why: "web1 still carries the Ivy Bridge level it booted with; xs4 lacks some of those bits, so XAPI refuses with VM_INCOMPATIBLE_WITH_THIS_HOST. The VMs view shows the same reason in web1's can-run-where strip.",
  },
  {
    title: "6. Reboot web1",
    run: async (model) => {
      const { conn, vms } = lookup(model);
      await conn.api("VM.clean_reboot", vms.web1);
      return `after clean_reboot: ${short((await conn.api("VM.get_last_boot_CPU_flags", vms.web1)).features)}`;
    },
    why: "A reboot keeps the featureset (Dundee reboots from the cached metadata), so xs4 still refuses web1.",
  },
  {
    title: "7. Shut web1 down and start it again",
    run: async (model) => {
      const { conn, vms } = lookup(model);
      await conn.api("VM.clean_shutdown", vms.web1);
      await conn.api("VM.start", vms.web1, false, false);
      return `after shutdown + start: ${short((await conn.api("VM.get_last_boot_CPU_flags", vms.web1)).features)}`;
    },
    why: "VM.start writes the current, lower pool level into last_boot_CPU_flags.",
  },
  {
    title: "8. Migrate web1 to xs4 again",
    run: migrate("web1", "xs4"),
    why: "Now web1's flags are a subset of xs4's features, and the migration succeeds.",
  },
  {
    title: "9. Try to join the AMD host xs5",
    run: join("xs5"),
    expectRefusal: true,
    why: "An AMD host cannot join an Intel pool: HOSTS_NOT_HOMOGENEOUS [CPUs differ]. pool.join_force would skip even that check.",
  },
];

export function storyView(ctx) {
  const { model, ui, render } = ctx;
  const { hosts } = lookup(model);
  const isDefault = ["xs1", "xs2", "xs3", "xs4", "xs5"].every((n) => hosts[n]);
  const next = Object.keys(ui.story).length;
  const runStep = async (i) => {
    ui.storyBusy = true;
    render();
    try {
      ui.story[i] = { ok: true, text: await STEPS[i].run(model) };
    } catch (e) {
      const desc = e.description || [String(e)];
      ui.story[i] = { ok: false, text: errorText(desc, model) };
    }
    ui.storyBusy = false;
    render();
  };
  return h("div", { class: "story" },
    h("p", null, "The levelling walk-through of docs/levelling.md, on the default world (xapi-sim serve with no scenario). Run the steps in order; each is a few XAPI calls, and the other views follow every change."),
    isDefault ? null : h("p", { class: "warn" }, "This world is not the default one: the story needs hosts xs1 to xs5."),
    h("ol", { class: "steps" }, STEPS.map((s, i) => {
      const res = ui.story[i];
      return h("li", { class: res ? (res.ok ? "done" : "refused") : "" },
        h("button", { "data-key": `story:${i}`, disabled: !isDefault || i !== next || ui.storyBusy, onclick: () => runStep(i) }, s.title),
        res ? h("pre", { class: "result" }, h("span", { "aria-hidden": "true" }, res.ok ? "✓ " : "✗ "), res.ok ? res.text : `refused: ${res.text}`) : null,
        res ? h("p", { class: "why" }, s.why) : null);
    })));
}
