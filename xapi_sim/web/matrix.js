// The feature matrix: one row per host's features_hvm / features_pv and one for the pool
// level; one column per named feature, grouped by CPUID word. Each cell carries a symbol
// (not colour alone) and says its feature, word and bit on hover and on focus.
import { h, parseFeatureset, hasBit } from "./dom.js";

const SYM = { in: "●", extra: "▲", absent: "○" };
const SAY = {
  in: "present, in the pool level",
  extra: "present, but not in the pool level",
  absent: "absent",
  level: "in the pool level",
  nolevel: "not in the pool level",
};

function rowsOf(ctx, p, conn) {
  const key = ctx.ui.mode === "pv" ? "features_pv" : "features_hvm";
  const rows = [];
  for (const wh of p.hosts) {
    const row = conn?.objs.host[wh.ref];
    rows.push({ label: `${wh.name_label} ${key}`, host: wh.name_label, words: parseFeatureset(row?.cpu_info?.[key]) });
  }
  const prow = conn ? Object.values(conn.objs.pool)[0] : null;
  const level = parseFeatureset(prow?.cpu_info?.[key]);
  return { rows, level, key };
}

function info(ctx, text) {
  const el = document.getElementById("cellinfo");
  if (el) el.textContent = text;
}

function onGridKey(ev) {
  const td = ev.target.closest("td[data-r]");
  if (!td) return;
  const table = td.closest("table");
  let r = Number(td.dataset.r);
  let c = Number(td.dataset.c);
  const nc = Number(table.dataset.cols);
  const nr = Number(table.dataset.rows);
  if (ev.key === "ArrowRight") c = Math.min(nc - 1, c + 1);
  else if (ev.key === "ArrowLeft") c = Math.max(0, c - 1);
  else if (ev.key === "ArrowDown") r = Math.min(nr - 1, r + 1);
  else if (ev.key === "ArrowUp") r = Math.max(0, r - 1);
  else if (ev.key === "Home") c = 0;
  else if (ev.key === "End") c = nc - 1;
  else return;
  ev.preventDefault();
  const next = table.querySelector(`td[data-r="${r}"][data-c="${c}"]`);
  if (next) {
    td.tabIndex = -1;
    next.tabIndex = 0;
    next.focus();
    next.scrollIntoView({ block: "nearest", inline: "nearest" });
  }
}

function poolMatrix(ctx, p) {
  const { model, ui } = ctx;
  const conn = model.connOfPool(p.ref);
  const { rows, level, key } = rowsOf(ctx, p, conn);
  const nwords = Math.max(0, ...rows.map((r) => (r.words ? r.words.length : 0)), level ? level.length : 0);
  const wordName = Object.fromEntries(model.features.words.map((w) => [w.index, w.name]));
  let feats = model.features.features.filter((f) => f.word < nwords);
  const all = [...rows.map((r) => r.words), level].filter(Boolean);
  feats = feats.filter((f) => all.some((w) => hasBit(w, f.word, f.bit)));
  if (ui.diffOnly) feats = feats.filter((f) => !all.every((w) => hasBit(w, f.word, f.bit)));
  const title = p.hosts.length === 1 ? `Standalone host ${p.hosts[0].name_label}` : `Pool ${p.name_label}`;
  if (feats.length === 0) {
    return h("section", { class: "pool" }, h("h2", null, title), h("p", null, ui.diffOnly ? "Every row has the same features." : "No featuresets yet."));
  }
  // word groups
  const groups = [];
  for (const f of feats) {
    const last = groups[groups.length - 1];
    if (last && last.word === f.word) last.n++;
    else groups.push({ word: f.word, n: 1 });
  }
  const poolKey = p.ref;
  const allRows = [...rows.map((r) => ({ ...r, kind: "host" })), { label: `pool level ${key}`, words: level, kind: "level" }];
  let focusable = ui.inputs[`mx-focus:${poolKey}`] || "0:0";
  const body = allRows.map((r, ri) => h("tr", { class: r.kind === "level" ? "level" : "" },
    h("th", { scope: "row" }, r.label),
    feats.map((f, ci) => {
      let st;
      let say;
      if (!r.words) { st = "absent"; say = "unknown (no featureset)"; }
      else if (r.kind === "level") {
        st = hasBit(r.words, f.word, f.bit) ? "in" : "absent";
        say = st === "in" ? SAY.level : SAY.nolevel;
      } else if (!hasBit(r.words, f.word, f.bit)) { st = "absent"; say = SAY.absent; }
      else if (level && !hasBit(level, f.word, f.bit)) { st = "extra"; say = SAY.extra; }
      else { st = "in"; say = level ? SAY.in : "present"; }
      const text = `${f.name}: word ${f.word} (${wordName[f.word]}), bit ${f.bit} — ${r.label}: ${say}`;
      const id = `${ri}:${ci}`;
      return h("td", {
        class: `cell ${st}`, title: text, "aria-label": text, tabindex: id === focusable ? 0 : -1,
        "data-r": ri, "data-c": ci, "data-feature": f.name, "data-state": st, "data-key": `mx:${poolKey}:${ri}:${f.name}`,
        onfocus: () => { info(ctx, text); ui.inputs[`mx-focus:${poolKey}`] = id; },
        onmouseenter: () => info(ctx, text),
      }, SYM[st]);
    })));
  return h("section", { class: "pool", "aria-label": `${title} features` },
    h("h2", null, title),
    h("div", { class: "scroll matrix-wrap", "data-scroll": `mx:${poolKey}` },
      h("table", { class: "matrix", role: "grid", "aria-label": `${title}: ${key}`, "data-rows": allRows.length, "data-cols": feats.length, onkeydown: onGridKey },
        h("thead", null,
          h("tr", null, h("th", { scope: "col" }, "CPUID word"), groups.map((g) => h("th", { colspan: g.n, scope: "colgroup", class: "word" }, `${g.word} (${wordName[g.word]})`))),
          h("tr", null, h("th", { scope: "col" }, "feature"), feats.map((f) => h("th", { scope: "col", class: "fname" }, h("span", null, f.name))))),
        h("tbody", null, body))));
}

export function matrixView(ctx) {
  const { ui, render } = ctx;
  const modeBtn = (m, label) => h("button", {
    "aria-pressed": ui.mode === m ? "true" : "false", "data-key": `mode:${m}`,
    onclick: () => { ui.mode = m; render(); },
  }, label);
  return h("div", null,
    h("div", { class: "toolbar" },
      h("span", { role: "group", "aria-label": "Featureset" }, modeBtn("hvm", "HVM"), modeBtn("pv", "PV")),
      h("label", null, h("input", { type: "checkbox", "data-key": "diff", checked: ui.diffOnly, onchange: (e) => { ui.diffOnly = e.target.checked; render(); } }), " only features not in every row"),
      h("span", { class: "legend" }, `${SYM.in} present (in the pool level)  ${SYM.extra} present, not in the pool level  ${SYM.absent} absent`)),
    h("p", { id: "cellinfo", class: "cellinfo", "aria-live": "polite" }, "Hover or focus a cell (arrow keys move) to see its feature, word and bit."),
    ctx.model.world.pools.map((p) => poolMatrix(ctx, p)));
}
