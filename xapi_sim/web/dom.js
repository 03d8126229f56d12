// A few DOM helpers: no framework, no build step.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "value") el.value = v;
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

export const GiB = 1024 ** 3;
export const gib = (n) => (n === null || n === undefined || Number.isNaN(n) ? "?" : `${(n / GiB).toFixed(1)} GiB`);

/** A featureset string ("17cbfbff-f7fa3223-...") as an array of 32-bit words. */
export function parseFeatureset(s) {
  if (!s) return null;
  return s.split("-").map((w) => parseInt(w, 16) >>> 0);
}

export const hasBit = (words, word, bit) =>
  !!words && word < words.length && ((words[word] >>> bit) & 1) === 1;

/** XAPI's error description shown as text, refs replaced by the names they stand for. */
export function errorText(description, model) {
  const [code, ...params] = description;
  const shown = params.map((p) => {
    const name = typeof p === "string" && p.startsWith("OpaqueRef:") ? model.nameOf(p) : null;
    return name ? `${name}` : p;
  });
  return shown.length ? `${code} [${shown.join(", ")}]` : code;
}

/** A select of options [{value, label}] bound to ui.inputs[key]. */
export function select(ui, key, options, label) {
  const sel = h("select", { "data-key": key, "aria-label": label },
    options.map((o) => h("option", { value: o.value }, o.label)));
  const want = ui.inputs[key];
  if (want !== undefined && options.some((o) => o.value === want)) sel.value = want;
  ui.inputs[key] = sel.value;
  sel.addEventListener("change", () => { ui.inputs[key] = sel.value; });
  return sel;
}

export function input(ui, key, label, dflt = "", attrs = {}) {
  if (ui.inputs[key] === undefined) ui.inputs[key] = dflt;
  const el = h("input", { "data-key": key, "aria-label": label, value: ui.inputs[key], ...attrs });
  el.addEventListener("input", () => { ui.inputs[key] = el.value; });
  return el;
}
