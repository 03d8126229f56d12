// The page's picture of the world, kept up to date the way XAPI clients do it: one
// event.from loop per pool master (token "" first: every object as "add"; then only changes),
// plus a poll of the control call sim.world for the world's shape (pools, hosts, endpoints).
import { call, sleep, XapiError } from "./rpc.js";

export const CLASSES = ["pool", "host", "host_metrics", "VM", "message", "network"];
const CLASS_OF = Object.fromEntries(CLASSES.map((c) => [c.toLowerCase(), c]));
const EVENT_TIMEOUT = 10.0; // seconds event.from waits for a change
const WORLD_POLL_MS = 700; // sim.world: pools joined, hosts added, crashed, powered on

const freshObjs = () => Object.fromEntries(CLASSES.map((c) => [c, {}]));

/** A host's endpoint from an address ("ip" or "ip:port"), as clients follow HOST_IS_SLAVE. */
export function endpointOf(address, port) {
  return address.includes(":") ? `http://${address}/` : `http://${address}:${port}/`;
}

/** One pool, read through its master's endpoint with its own session. */
class PoolConn {
  constructor(model, info, url) {
    this.model = model;
    this.ref = info.ref;
    this.url = url;
    this.session = null;
    this.token = "";
    this.objs = freshObjs();
    this.free = {}; // host ref -> host.compute_free_memory
    this.canRun = {}; // vm ref -> host ref -> {ok, text}
    this.dests = {}; // host ref -> host.migrate_receive map (reused)
    this.error = null;
    this.loaded = false;
    this.stopped = false;
    this.derivedGen = 0;
  }

  async ensureSession() {
    if (!this.session) {
      const { user, password } = this.model;
      this.session = await call(this.url, "session.login_with_password", [
        user, password, "1.0", "xapi-sim page",
      ]);
      this.token = "";
      this.dests = {};
    }
    return this.session;
  }

  /** One XAPI call in this pool; logs in again once if the session has gone. */
  async api(method, ...args) {
    for (let attempt = 0; ; attempt++) {
      const s = await this.ensureSession();
      try {
        return await call(this.url, method, [s, ...args]);
      } catch (e) {
        if (e.code === "SESSION_INVALID" && attempt === 0) {
          this.session = null;
          continue;
        }
        throw e;
      }
    }
  }

  async loop() {
    while (!this.stopped) {
      try {
        await this.ensureSession();
        const first = !this.token;
        const r = await call(
          this.url, "event.from",
          [this.session, CLASSES, this.token, first ? 0.0 : EVENT_TIMEOUT],
          (EVENT_TIMEOUT + 20) * 1000,
        );
        if (this.stopped) return;
        if (first) this.objs = freshObjs();
        this.token = r.token;
        this.error = null;
        for (const ev of r.events) {
          const cls = CLASS_OF[ev.class.toLowerCase()];
          if (!cls) continue;
          if (ev.operation === "del") delete this.objs[cls][ev.ref];
          else if (ev.snapshot) this.objs[cls][ev.ref] = ev.snapshot;
        }
        this.loaded = true;
        if (first || r.events.length) {
          this.model.changed();
          this.refreshDerived();
        }
      } catch (e) {
        if (this.stopped) return;
        if (e.code === "SESSION_INVALID") {
          this.session = null;
          this.token = "";
          continue;
        }
        this.error = e;
        this.model.changed();
        await sleep(1000);
      }
    }
  }

  hostRefs() {
    return Object.keys(this.objs.host).sort((a, b) =>
      this.objs.host[a].name_label.localeCompare(this.objs.host[b].name_label));
  }

  guestRefs() {
    return Object.keys(this.objs.VM)
      .filter((r) => {
        const v = this.objs.VM[r];
        return !v.is_a_template && !v.is_control_domain && !v.is_a_snapshot;
      })
      .sort((a, b) => this.objs.VM[a].name_label.localeCompare(this.objs.VM[b].name_label));
  }

  /** Free memory per host and the "can run where" answers, recomputed after changes. */
  async refreshDerived() {
    const gen = ++this.derivedGen;
    const free = {};
    const canRun = {};
    try {
      for (const h of this.hostRefs()) {
        try {
          free[h] = Number(await this.api("host.compute_free_memory", h));
        } catch (e) {
          free[h] = null;
        }
      }
      for (const vm of this.guestRefs()) {
        canRun[vm] = {};
        for (const h of this.hostRefs()) {
          canRun[vm][h] = await this.canRunOn(vm, h);
          if (gen !== this.derivedGen || this.stopped) return;
        }
      }
    } catch (e) {
      return; // the pool went away meanwhile; the next change recomputes
    }
    if (gen !== this.derivedGen) return;
    this.free = free;
    this.canRun = canRun;
    this.model.changed();
  }

  /** Whether ``vm`` may run on host ``h``: a halted VM is asked VM.assert_can_boot_here;
   * a running, paused or suspended one VM.assert_can_migrate with the destination map
   * host.migrate_receive gives (the check a live migration makes, CPU features included). */
  async canRunOn(vm, h) {
    const row = this.objs.VM[vm];
    if (!row) return { ok: false, text: "gone" };
    if (row.power_state !== "Halted" && row.resident_on === h) {
      return { ok: true, here: true, text: "runs here" };
    }
    try {
      if (row.power_state === "Halted") {
        await this.api("VM.assert_can_boot_here", vm, h);
      } else {
        let dest = this.dests[h];
        if (!dest) {
          const net = Object.keys(this.objs.network)[0];
          dest = this.dests[h] = await this.api("host.migrate_receive", h, net, {});
        }
        await this.api("VM.assert_can_migrate", vm, dest, true, {}, {}, {});
      }
      return { ok: true, text: "yes" };
    } catch (e) {
      return { ok: false, error: e.description, text: e.message };
    }
  }
}

export class Model {
  constructor(user, password, onChange) {
    this.user = user;
    this.password = password;
    this.onChange = onChange;
    this.home = `${location.protocol}//${location.host}/`;
    this.homeSession = null;
    this.world = null; // sim.world
    this.features = null; // sim.cpu_features
    this.faults = [];
    this.conns = new Map(); // pool ref + master url -> PoolConn
    this.worldError = null;
    this.pending = false;
    this.stopped = false;
  }

  changed() {
    if (this.pending) return;
    this.pending = true;
    setTimeout(() => {
      this.pending = false;
      this.onChange();
    }, 30);
  }

  /** Log in where the page came from; a pool member answers HOST_IS_SLAVE [master]:
   * follow it to the master, as clients do. */
  async login() {
    const port = location.port || (location.protocol === "https:" ? "443" : "80");
    let url = this.home;
    for (let hops = 0; hops < 3; hops++) {
      try {
        this.homeSession = await call(url, "session.login_with_password", [
          this.user, this.password, "1.0", "xapi-sim page",
        ]);
        this.home = url;
        return;
      } catch (e) {
        if (e.code !== "HOST_IS_SLAVE") throw e;
        url = endpointOf(e.description[1], port);
      }
    }
    throw new XapiError(["HOST_IS_SLAVE", "too many redirections"]);
  }

  async start() {
    await this.login();
    this.features = await this.control("sim.cpu_features");
    await this.pollWorld();
    this.worldLoop();
  }

  stop() {
    this.stopped = true;
    for (const c of this.conns.values()) c.stopped = true;
  }

  /** A control-API call: through the page's own session first, else through any pool
   * master that still answers (the control API takes any pool's session). */
  async control(method, ...args) {
    const tries = [[this.home, () => this.homeSession, () => this.login()]];
    for (const c of this.conns.values()) {
      tries.push([c.url, () => c.ensureSession(), () => { c.session = null; }]);
    }
    let last = null;
    for (const [url, session, relogin] of tries) {
      for (let attempt = 0; attempt < 2; attempt++) {
        try {
          return await call(url, method, [await session(), ...args]);
        } catch (e) {
          last = e;
          if (e.code === "SESSION_INVALID" && attempt === 0) {
            try { await relogin(); } catch (e2) { last = e2; break; }
            continue;
          }
          if (e.code === "HOST_UNREACHABLE" || e.code === "HOST_IS_SLAVE") break;
          throw e;
        }
      }
    }
    throw last;
  }

  async worldLoop() {
    while (!this.stopped) {
      await sleep(WORLD_POLL_MS);
      try {
        await this.pollWorld();
      } catch (e) {
        this.worldError = e;
        this.changed();
      }
    }
  }

  async pollWorld() {
    const world = await this.control("sim.world");
    this.faults = await this.control("sim.fault_list");
    const before = JSON.stringify(this.world);
    this.world = world;
    this.worldError = null;
    const keep = new Set();
    for (const p of world.pools) {
      const master = p.hosts.find((h) => h.ref === p.master);
      if (!master || !master.url) continue;
      const key = `${p.ref} ${master.url}`;
      keep.add(key);
      if (!this.conns.has(key)) {
        const c = new PoolConn(this, p, master.url);
        this.conns.set(key, c);
        c.loop();
      }
    }
    for (const [key, c] of this.conns) {
      if (!keep.has(key)) {
        c.stopped = true;
        this.conns.delete(key);
      }
    }
    if (JSON.stringify(world) !== before) this.changed();
  }

  // -- lookups ------------------------------------------------------------------------
  connOfPool(poolRef) {
    for (const c of this.conns.values()) if (c.ref === poolRef) return c;
    return null;
  }

  /** {pool (sim.world entry), host (sim.world entry), conn} for a host ref. */
  findHost(ref) {
    for (const p of this.world?.pools || []) {
      const h = p.hosts.find((x) => x.ref === ref);
      if (h) return { pool: p, host: h, conn: this.connOfPool(p.ref) };
    }
    return null;
  }

  findVm(ref) {
    for (const c of this.conns.values()) if (c.objs.VM[ref]) return c;
    return null;
  }

  /** A readable name for a ref anywhere in the world, or null. */
  nameOf(ref) {
    for (const c of this.conns.values()) {
      for (const cls of ["host", "VM", "pool", "network"]) {
        const row = c.objs[cls][ref];
        if (row) return row.name_label || (cls === "pool" ? "(pool)" : ref);
      }
    }
    return null;
  }
}
