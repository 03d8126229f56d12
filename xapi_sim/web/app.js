// The page: login, tabs, re-rendering on every change, and the outcome of each control.
import { Model } from "./model.js";
import { h, errorText } from "./dom.js";
import { worldView } from "./world.js";
import { matrixView } from "./matrix.js";
import { vmsView } from "./vms.js";
import { controlsView } from "./controls.js";
import { storyView } from "./story.js";

const VIEWS = { world: worldView, features: matrixView, vms: vmsView, controls: controlsView, story: storyView };
const $ = (id) => document.getElementById(id);

const ui = {
  view: "world",
  mode: "hvm", // feature matrix: hvm | pv
  diffOnly: false,
  inputs: {}, // data-key -> value of form fields, kept across re-renders
  story: {}, // step index -> {ok, text}
  busy: false,
};
let model = null;

/** Run one control: show what was called, then "done" or XAPI's error text. */
async function act(label, fn) {
  const out = $("outcome");
  out.className = "outcome busy";
  out.replaceChildren(h("span", null, `… ${label}`));
  try {
    const r = await fn();
    out.className = "outcome ok";
    const extra = typeof r === "string" && r ? ` → ${model.nameOf(r) || r}` : "";
    out.replaceChildren(h("span", { class: "sym", "aria-hidden": "true" }, "✓ "), `${label}: done${extra}`);
    return { ok: true, value: r };
  } catch (e) {
    const desc = e.description || [String(e)];
    out.className = "outcome refused";
    out.replaceChildren(
      h("span", { class: "sym", "aria-hidden": "true" }, "✗ "),
      `${label} refused: `,
      h("code", { class: "xapi-error", title: desc.join(" ") }, errorText(desc, model)),
    );
    return { ok: false, error: desc };
  } finally {
    render();
  }
}

function connLine() {
  const c = $("conn");
  if (!model) return c.replaceChildren();
  const n = model.conns.size;
  const bad = [...model.conns.values()].filter((x) => x.error);
  c.replaceChildren(
    `Logged in as ${model.user} via ${model.home} · following event.from on ${n} pool${n === 1 ? "" : "s"}`,
    bad.length ? h("span", { class: "warn" }, ` · ${bad.length} not answering`) : "",
    model.worldError ? h("span", { class: "warn" }, ` · ${model.worldError.message}`) : "",
  );
}

function render() {
  if (!model || !model.world) return;
  connLine();
  for (const b of document.querySelectorAll("[role=tab]")) {
    const sel = b.dataset.view === ui.view;
    b.setAttribute("aria-selected", sel ? "true" : "false");
    b.tabIndex = sel ? 0 : -1;
  }
  const view = $("view");
  view.setAttribute("aria-labelledby", `tab-${ui.view}`);
  const active = document.activeElement;
  const focusKey = active && view.contains(active) ? active.dataset.key : null;
  const scroll = [...view.querySelectorAll("[data-scroll]")].map((e) => [e.dataset.scroll, e.scrollLeft]);
  const ctx = { model, ui, act, render };
  view.replaceChildren(VIEWS[ui.view](ctx));
  for (const [k, left] of scroll) {
    const e = view.querySelector(`[data-scroll="${CSS.escape(k)}"]`);
    if (e) e.scrollLeft = left;
  }
  if (focusKey) {
    const e = view.querySelector(`[data-key="${CSS.escape(focusKey)}"]`);
    if (e) e.focus({ preventScroll: true });
  }
}

function selectView(name, focus) {
  ui.view = name;
  render();
  if (focus) $(`tab-${name}`).focus();
}

function setupTabs() {
  const tabs = [...document.querySelectorAll("[role=tab]")];
  for (const [i, b] of tabs.entries()) {
    b.addEventListener("click", () => selectView(b.dataset.view, false));
    b.addEventListener("keydown", (ev) => {
      let j = null;
      if (ev.key === "ArrowRight") j = (i + 1) % tabs.length;
      else if (ev.key === "ArrowLeft") j = (i - 1 + tabs.length) % tabs.length;
      else if (ev.key === "Home") j = 0;
      else if (ev.key === "End") j = tabs.length - 1;
      if (j !== null) {
        ev.preventDefault();
        selectView(tabs[j].dataset.view, true);
      }
    });
  }
}

async function login(ev) {
  ev.preventDefault();
  $("login-error").textContent = "";
  $("login-button").disabled = true;
  const m = new Model($("user").value, $("password").value, render);
  try {
    await m.start();
  } catch (e) {
    m.stop();
    $("login-error").textContent = e.description ? e.description.join(" ") : String(e);
    $("login-button").disabled = false;
    return;
  }
  model = m;
  window.xapiSimModel = m; // for the browser tests and the curious
  $("login").hidden = true;
  $("app").hidden = false;
  render();
  $("tab-world").focus();
}

setupTabs();
$("login").addEventListener("submit", login);
$("password").focus();
