// ttp's analyst page: the ATT&CK matrix as a heatmap, drill-down to tags,
// one attacker's timeline, rule health and state, live updates. A plain
// ES module: no build step, nothing loaded from elsewhere. Every piece of
// data goes into the page through textContent, never as HTML.

const API = "/api/v1";
const PAGE = 25;
const FILTERS = ["since", "until", "attacker", "identity", "session", "decky", "min_confidence", "rule"];

const $ = (sel) => document.querySelector(sel);
const state = {
  attack: null,          // the ATT&CK table
  filters: {},           // the applied filters
  metric: "tags",        // or "attackers"
  all: false,            // every technique, not only those with tags
  open: new Set(),       // parents whose sub-techniques are shown
  drill: null,           // {technique, tactic, label, offset}
  view: "matrix",
  attacker: "",
};

// ---- DOM ------------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const fmt = (n) => Number(n).toLocaleString("en");
const plural = (n, one, many) => `${fmt(n)} ${n === 1 ? one : many}`;

function showError(text) {
  $("#error").textContent = text || "";
}

// ---- API --------------------------------------------------------------------

function headers(extra = {}) {
  const token = sessionStorage.getItem("ttp-token");
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

let askingToken = null;
function askToken() {
  if (!askingToken) {
    askingToken = new Promise((resolve) => {
      const form = $("#token");
      form.hidden = false;
      form.querySelector("input").focus();
      form.onsubmit = (e) => {
        e.preventDefault();
        sessionStorage.setItem("ttp-token", form.token.value.trim());
        form.hidden = true;
        askingToken = null;
        resolve();
      };
    });
  }
  return askingToken;
}

async function api(path, options = {}) {
  for (;;) {
    const res = await fetch(API + path, { ...options, headers: headers(options.headers) });
    if (res.status === 401) {
      await askToken();
      continue;
    }
    const body = res.headers.get("content-type")?.includes("json") ? await res.json() : await res.text();
    if (!res.ok) {
      const why = typeof body === "object" && body && body.detail ? body.detail : res.statusText;
      throw new Error(`${res.status}: ${typeof why === "string" ? why : JSON.stringify(why)}`);
    }
    return body;
  }
}

function query(extra = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries({ ...state.filters, ...extra })) {
    if (v !== "" && v !== null && v !== undefined) q.set(k, v);
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

// Downloads an authenticated export as a file.
async function download(path, name) {
  try {
    const res = await fetch(API + path, { headers: headers() });
    if (res.status === 401) {
      await askToken();
      return download(path, name);
    }
    if (!res.ok) throw new Error(`${res.status} ${res.statusText}`);
    const url = URL.createObjectURL(await res.blob());
    const a = h("a", { href: url, download: name });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (e) {
    showError(`download failed: ${e.message}`);
  }
}

// ---- ATT&CK names -------------------------------------------------------

function names() {
  const byId = new Map();
  for (const t of state.attack.techniques) byId.set(t.id, t);
  return byId;
}

function techniqueName(id) {
  return state.names?.get(id)?.name ?? "";
}

function tacticName(id) {
  return state.attack.tactics.find((t) => t.id === id)?.name ?? id;
}

// ---- heat -------------------------------------------------------------------

// Five levels on a log scale: level l holds the values from
// (max+1)^((l-1)/5) up to below (max+1)^(l/5).
function level(v, max) {
  if (!v) return 0;
  return Math.min(5, 1 + Math.floor((5 * Math.log(v)) / Math.log(max + 1)));
}

function legend(max) {
  const spans = [h("span", { class: "lvl0" }, "0")];
  for (let l = 1; l <= 5; l++) {
    const lo = Math.max(1, Math.ceil((max + 1) ** ((l - 1) / 5)));
    const hi = Math.min(max, Math.ceil((max + 1) ** (l / 5)) - 1);
    if (lo > hi) continue;
    spans.push(h("span", { class: `lvl${l}` }, lo === hi ? fmt(lo) : `${fmt(lo)}–${fmt(hi)}`));
  }
  return h("div", { class: "legend", role: "group", "aria-label": "Colour legend" },
    `${state.metric === "tags" ? "Tags" : "Attackers"}:`, spans);
}

// ---- matrix ---------------------------------------------------------------

async function renderMatrix() {
  const m = await api(`/ui/matrix${query()}`);
  const metric = state.metric;
  const value = (c) => (c ? c[metric] : 0);
  const parents = new Map(); // "TA|T" -> cell
  for (const c of m.techniques) parents.set(`${c.tactic}|${c.technique_id}`, c);
  const subs = new Map(); // "TA|T" -> [cells]
  for (const c of m.sub_techniques) {
    const k = `${c.tactic}|${c.technique_id}`;
    if (!subs.has(k)) subs.set(k, []);
    subs.get(k).push(c);
  }
  const max = Math.max(1, ...m.techniques.map(value), ...m.sub_techniques.map(value));
  // Columns: ATT&CK's tactics in order, then any other tactic a rule used.
  const tactics = state.attack.tactics.map((t) => ({ id: t.id, name: t.name, shortname: t.shortname }));
  for (const c of m.techniques) {
    if (!tactics.some((t) => t.id === c.tactic)) tactics.push({ id: c.tactic, name: c.tactic, shortname: null });
  }
  const columns = tactics.map((tactic) => {
    const ids = new Set(m.techniques.filter((c) => c.tactic === tactic.id).map((c) => c.technique_id));
    if (state.all && tactic.shortname) {
      for (const t of state.attack.techniques) {
        if (!t.id.includes(".") && t.tactics.includes(tactic.shortname)) ids.add(t.id);
      }
    }
    const list = [...ids].sort((a, b) => value(parents.get(`${tactic.id}|${b}`)) - value(parents.get(`${tactic.id}|${a}`)) || a.localeCompare(b));
    const total = m.techniques.filter((c) => c.tactic === tactic.id).reduce((s, c) => s + c.tags, 0);
    if (!state.all && list.length === 0) return null;
    return h("section", { class: "tactic", "aria-label": tactic.name },
      h("h2", {}, tactic.name, h("span", { class: "n" }, `${tactic.id} · ${plural(total, "tag", "tags")}`)),
      h("ul", {}, list.map((id) => techniqueItem(tactic, id, parents.get(`${tactic.id}|${id}`), subs.get(`${tactic.id}|${id}`) || [], value, max))));
  }).filter(Boolean);
  const metricBox = h("fieldset", {},
    h("legend", {}, "Colour by"),
    ["tags", "attackers"].map((k) => h("label", {},
      h("input", { type: "radio", name: "metric", value: k, checked: state.metric === k, onchange: () => { state.metric = k; refresh(); } }),
      k === "tags" ? " tag count " : " distinct attackers ")));
  const allBox = h("label", {},
    h("input", { type: "checkbox", checked: state.all, onchange: (e) => { state.all = e.target.checked; refresh(); } }),
    " every technique (not only those tagged)");
  const view = $("#view");
  view.replaceChildren(
    h("div", { class: "toolbar" }, metricBox, allBox, legend(max),
      h("span", { class: "summary", id: "summary" }, `${plural(m.tags, "tag", "tags")}, ${plural(m.attackers, "attacker", "attackers")}`)),
    columns.length
      ? h("div", { class: "matrix", id: "matrix" }, columns)
      : h("p", { class: "muted" }, "No tag matches these filters."));
}

function techniqueItem(tactic, id, cell, subCells, value, max) {
  const v = value(cell);
  const name = techniqueName(id);
  const label = `${id} ${name} under ${tactic.name}: ${plural(cell?.tags ?? 0, "tag", "tags")}, ${plural(cell?.attackers ?? 0, "attacker", "attackers")}`;
  const button = h("button", {
    type: "button", class: `cell lvl${level(v, max)}`, "aria-label": label,
    dataset: { technique: id, tactic: tactic.id, count: String(v) },
    onclick: () => openDrill({ technique: id, tactic: tactic.id, label: `${id} ${name}`, tacticName: tactic.name }),
  }, h("span", { class: "name" }, name || id, h("span", { class: "tid" }, id)), h("span", { class: "count" }, fmt(v)));
  const key = `${tactic.id}|${id}`;
  const item = h("li", { class: "tech" });
  if (!subCells.length) {
    item.append(button);
    return item;
  }
  const open = state.open.has(key);
  const listId = `subs-${tactic.id}-${id}`;
  const toggle = h("button", {
    type: "button", class: "expand", "aria-expanded": String(open), "aria-controls": listId,
    "aria-label": `${open ? "Hide" : "Show"} ${subCells.length} sub-techniques of ${id}`,
    onclick: () => { open ? state.open.delete(key) : state.open.add(key); refresh(); },
  }, `${open ? "▾" : "▸"} ${subCells.length}`);
  item.append(h("div", { class: "row" }, button, toggle));
  const list = h("ul", { class: "subs", id: listId, hidden: !open });
  for (const c of subCells) {
    const sv = value(c);
    const sname = techniqueName(c.sub_technique_id);
    list.append(h("li", {}, h("button", {
      type: "button", class: `cell lvl${level(sv, max)}`,
      "aria-label": `${c.sub_technique_id} ${sname} under ${tactic.name}: ${plural(c.tags, "tag", "tags")}, ${plural(c.attackers, "attacker", "attackers")}`,
      dataset: { technique: c.sub_technique_id, tactic: tactic.id, count: String(sv) },
      onclick: () => openDrill({ technique: c.sub_technique_id, tactic: tactic.id, label: `${c.sub_technique_id} ${sname}`, tacticName: tactic.name }),
    }, h("span", { class: "name" }, sname || c.sub_technique_id, h("span", { class: "tid" }, c.sub_technique_id)), h("span", { class: "count" }, fmt(sv)))));
  }
  item.append(list);
  return item;
}

// ---- drill-down ---------------------------------------------------------

function openDrill(d) {
  state.drill = { ...d, offset: 0 };
  renderDrill().then(() => $("#drill-close").focus());
}

async function renderDrill() {
  const d = state.drill;
  const panel = $("#drill");
  if (!d) {
    panel.hidden = true;
    return;
  }
  const page = await api(`/ui/tags${query({ technique: d.technique, tactic: d.tactic, offset: d.offset, limit: PAGE })}`);
  // Closed (or another cell opened) meanwhile.
  if (state.drill !== d) return;
  panel.hidden = false;
  $("#drill-title").textContent = `${d.label} under ${d.tacticName}: ${plural(page.total, "tag", "tags")}`;
  const first = page.total ? d.offset + 1 : 0;
  const last = d.offset + page.tags.length;
  const pager = h("div", { class: "pager" },
    h("button", { type: "button", disabled: d.offset === 0, onclick: () => { d.offset = Math.max(0, d.offset - PAGE); renderDrill(); } }, "Newer"),
    h("span", {}, `${fmt(first)}–${fmt(last)} of ${fmt(page.total)}, newest first`),
    h("button", { type: "button", disabled: last >= page.total, onclick: () => { d.offset += PAGE; renderDrill(); } }, "Older"));
  $("#drill-body").replaceChildren(pager, h("ol", { class: "tags", start: first, "aria-label": "Tags" }, page.tags.map(tagItem)));
}

function value(v) {
  if (v === null || v === undefined) return h("span", { class: "muted" }, "—");
  if (typeof v === "object") return h("pre", {}, JSON.stringify(v, null, 2));
  return String(v);
}

function tagItem(t) {
  const anchors = [["attacker", t.attacker_uuid], ["identity", t.identity_uuid], ["session", t.session_id], ["decky", t.decky_id], ["source", `${t.source_kind} ${t.source_id}`]];
  const evidence = t.evidence && typeof t.evidence === "object" && !Array.isArray(t.evidence)
    ? Object.entries(t.evidence) : [["evidence", t.evidence]];
  return h("li", { class: "tag", dataset: { uuid: t.uuid, rule: t.rule_id } },
    h("header", {},
      h("time", { datetime: t.created_at }, t.created_at),
      h("button", { type: "button", class: "rule-link", onclick: () => showRule(t), "aria-label": `Rule ${t.rule_id} version ${t.rule_version}: show its text` }, `${t.rule_id} v${t.rule_version}`),
      h("span", {}, `confidence ${Number(t.confidence.toFixed(3))}`),
      h("span", { class: "muted" }, t.sub_technique_id || t.technique_id)),
    h("dl", {}, anchors.filter(([, v]) => v).map(([k, v]) => [
      h("dt", {}, k),
      h("dd", {}, k === "attacker" ? h("a", { href: `#/attacker/${encodeURIComponent(v)}` }, v) : v)])),
    h("details", { open: true }, h("summary", {}, "Evidence"),
      h("dl", { class: "evidence" }, evidence.map(([k, v]) => [h("dt", {}, k), h("dd", {}, value(v))]))));
}

async function showRule(t) {
  const dialog = $("#rule-dialog");
  $("#rule-title").textContent = `${t.rule_id} version ${t.rule_version}`;
  $("#rule-meta").textContent = "";
  $("#rule-text").textContent = "";
  if (!t.rule_sha256) {
    $("#rule-meta").textContent = "This tag was stored without its rule's SHA-256 (written by DECNET): its rule text is not on record.";
  } else {
    try {
      const r = await api(`/ui/rule-text/${encodeURIComponent(t.rule_sha256)}`);
      $("#rule-meta").textContent = `${r.source_path} · SHA-256 ${r.sha256} · loaded ${r.first_loaded_at} – ${r.last_loaded_at}`;
      $("#rule-text").textContent = r.yaml_content;
    } catch (e) {
      $("#rule-meta").textContent = `The rule text could not be read: ${e.message}`;
    }
  }
  dialog.showModal();
}

// ---- attacker -----------------------------------------------------------

async function renderAttacker() {
  const id = state.attacker;
  const form = h("form", { class: "toolbar", "aria-label": "Attacker",
    onsubmit: (e) => { e.preventDefault(); location.hash = `#/attacker/${encodeURIComponent(e.target.uuid.value.trim())}`; } },
    h("label", {}, "Attacker UUID ", h("input", { name: "uuid", value: id, size: 40, required: true })),
    h("button", { type: "submit" }, "Show"));
  const view = $("#view");
  if (!id) {
    view.replaceChildren(form, h("p", { class: "muted" }, "Give an attacker's UUID, or follow one from a tag."));
    return;
  }
  const data = await api(`/ui/attacker/${encodeURIComponent(id)}${query({ attacker: "" })}`);
  const rows = data.techniques;
  const times = rows.flatMap((r) => [Date.parse(r.first_seen), Date.parse(r.last_seen)]).filter((x) => !Number.isNaN(x));
  const lo = Math.min(...times), hi = Math.max(...times);
  const span = Math.max(1, hi - lo);
  const links = h("p", { class: "links" },
    h("button", { type: "button", onclick: () => download(`/ttp/export/navigator/attacker/${encodeURIComponent(id)}`, `attacker-${id}-navigator.json`) }, "ATT&CK Navigator layer"),
    h("button", { type: "button", onclick: () => download(`/attackers/${encodeURIComponent(id)}/export/stix`, `attacker-${id}-stix.json`) }, "STIX 2.1 bundle"));
  const table = h("table", { id: "timeline" },
    h("caption", { class: "muted" }, `${plural(rows.length, "technique", "techniques")} of attacker ${id}, first seen first`),
    h("thead", {}, h("tr", {}, ["Technique", "Tactic", "First seen", "Last seen"].map((c) => h("th", { scope: "col" }, c)), h("th", { scope: "col", class: "num" }, "Tags"), h("th", { scope: "col" }, "Timeline"))),
    h("tbody", {}, rows.map((r) => {
      const id2 = r.sub_technique_id || r.technique_id;
      const a = Date.parse(r.first_seen), b = Date.parse(r.last_seen);
      const left = ((a - lo) / span) * 100, width = Math.max(0.5, ((b - a) / span) * 100);
      return h("tr", { dataset: { technique: id2 } },
        h("td", {}, `${id2} ${techniqueName(id2)}`),
        h("td", {}, tacticName(r.tactic)),
        h("td", {}, r.first_seen), h("td", {}, r.last_seen),
        h("td", { class: "num" }, fmt(r.tags)),
        h("td", {}, h("div", { class: "track", role: "img", "aria-label": `from ${r.first_seen} to ${r.last_seen}` }, bar(left, width))));
    })));
  view.replaceChildren(form, links, rows.length ? table : h("p", { class: "muted" }, "No tag of this attacker matches the filters."));
}

// A timeline bar (styled through the CSSOM: the page's CSP allows no
// inline style attribute).
function bar(left, width) {
  const el = h("div", { class: "bar" });
  el.style.left = `${left.toFixed(2)}%`;
  el.style.width = `${Math.min(width, 100 - left).toFixed(2)}%`;
  return el;
}

// ---- rules ---------------------------------------------------------------

function stateText(r) {
  if (r.state === "disabled") return r.expires_at ? `disabled until ${r.expires_at}` : "disabled";
  if (r.state === "clipped") return `clipped to ${r.confidence_max}${r.expires_at ? ` until ${r.expires_at}` : ""}`;
  return r.state;
}

async function setState(r, kind) {
  if (kind === "enabled") {
    await api(`/ttp/rules/${encodeURIComponent(r.rule_id)}/state`, { method: "DELETE" });
    return refresh();
  }
  const dialog = $("#state-dialog");
  const form = $("#state-form");
  form.reset();
  $("#state-title").textContent = kind === "disabled" ? "Disable a rule" : "Clip a rule's confidence";
  $("#state-rule").textContent = `${r.rule_id} (${r.source_path ?? ""})`;
  $("#state-max-label").hidden = kind !== "clipped";
  form.confidence_max.required = kind === "clipped";
  dialog.returnValue = "";
  dialog.onclose = async () => {
    if (dialog.returnValue !== "apply") return;
    const body = { state: kind, reason: form.reason.value.trim() || "set from the page" };
    if (kind === "clipped") body.confidence_max = Number(form.confidence_max.value);
    if (form.expires_at.value.trim()) body.expires_at = form.expires_at.value.trim();
    try {
      await api(`/ttp/rules/${encodeURIComponent(r.rule_id)}/state`, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
      });
      showError("");
      refresh();
    } catch (e) {
      showError(`${r.rule_id}: ${e.message}`);
    }
  };
  dialog.showModal();
}

async function renderRules() {
  const data = await api(`/ui/rules${query()}`);
  const rows = data.rules;
  const table = h("table", { id: "rules" },
    h("caption", { class: "muted" }, `${plural(rows.length, "rule", "rules")}; tags counted over the filters' time range`),
    h("thead", {}, h("tr", {}, ["Rule", "Version", "File", "State"].map((c) => h("th", { scope: "col" }, c)),
      h("th", { scope: "col", class: "num" }, "Tags"), ["Last fired", "Last load error", "Actions"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows.map((r) => h("tr", { dataset: { rule: r.rule_id } },
      h("td", {}, r.rule_id || h("span", { class: "muted" }, "(no rule)")),
      h("td", {}, r.rule_version ?? ""),
      h("td", {}, r.source_path ?? ""),
      h("td", { class: `state-${r.state}` }, stateText(r), r.reason ? h("div", { class: "muted" }, `${r.reason}${r.set_by ? ` (${r.set_by})` : ""}`) : null),
      h("td", { class: "num" }, fmt(r.tags)),
      h("td", {}, r.last_fired ?? ""),
      h("td", {}, r.last_error ? h("pre", {}, r.last_error) : ""),
      h("td", {}, r.rule_id && r.state !== "not loaded" ? [
        r.state !== "disabled" ? h("button", { type: "button", class: "disable", onclick: () => setState(r, "disabled"), "aria-label": `Disable ${r.rule_id}` }, "Disable") : null, " ",
        h("button", { type: "button", class: "clip", onclick: () => setState(r, "clipped"), "aria-label": `Clip ${r.rule_id}` }, "Clip"), " ",
        r.state === "disabled" || r.state === "clipped" ? h("button", { type: "button", class: "enable", onclick: () => setState(r, "enabled").catch((e) => showError(e.message)), "aria-label": `Enable ${r.rule_id}` }, "Enable") : null,
      ] : "")))));
  const audit = h("table", { id: "audit" },
    h("caption", { class: "muted" }, data.rule_log ? "Audit log, newest first (last 100)" : "This database has no rule log yet (no ttp process has written to it)."),
    h("thead", {}, h("tr", {}, ["At", "Rule", "Action", "File", "Detail"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, data.audit.map((e) => h("tr", {},
      h("td", {}, e.at), h("td", {}, e.rule_id ?? ""), h("td", {}, e.action), h("td", {}, e.path ?? ""),
      h("td", {}, e.detail ? h("pre", {}, e.detail) : "")))));
  $("#view").replaceChildren(table, h("h2", {}, "Audit log"), audit);
}

// ---- routing, filters, live ---------------------------------------------

function route() {
  const [, view = "matrix", arg = ""] = location.hash.replace(/^#/, "").split("/");
  state.view = ["matrix", "attacker", "rules"].includes(view) ? view : "matrix";
  if (state.view === "attacker") state.attacker = decodeURIComponent(arg);
  for (const a of document.querySelectorAll("nav a")) {
    if (a.dataset.view === state.view) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

let rendering = Promise.resolve();
function refresh() {
  rendering = rendering.then(async () => {
    try {
      if (state.view === "matrix") await renderMatrix();
      else if (state.view === "attacker") await renderAttacker();
      else await renderRules();
      if (state.drill) await renderDrill();
      showError("");
    } catch (e) {
      showError(e.message);
    }
  });
  return rendering;
}

function setLive(text, cls) {
  const el = $("#live");
  el.textContent = text;
  el.className = `live ${cls}`;
}

// Server-Sent Events read through fetch, so that the bearer token goes in
// a header (EventSource cannot send one).
async function live() {
  let timer = null;
  for (;;) {
    try {
      const res = await fetch(`${API}/ui/events`, { headers: headers({ Accept: "text/event-stream" }) });
      if (res.status === 401) {
        await askToken();
        continue;
      }
      if (!res.ok || !res.body) throw new Error(res.statusText);
      setLive("live", "on");
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      let first = true;
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
          if (!block.split("\n").some((l) => l === "event: change") || !data) continue;
          const m = JSON.parse(data);
          setLive(`live · ${plural(m.tags, "tag", "tags")}`, "on");
          if (first) {
            first = false;
            continue;
          }
          clearTimeout(timer);
          timer = setTimeout(refresh, 200);
        }
      }
    } catch (e) {
      // fall through to the retry
    }
    setLive("offline, retrying", "off");
    await new Promise((r) => setTimeout(r, 2000));
  }
}

function readFilters() {
  const form = $("#filters");
  state.filters = {};
  for (const k of FILTERS) {
    const v = form.elements[k].value.trim();
    if (v) state.filters[k] = v;
  }
  const q = new URLSearchParams(state.filters).toString();
  history.replaceState(null, "", `${location.pathname}${q ? `?${q}` : ""}${location.hash}`);
}

async function main() {
  const params = new URLSearchParams(location.search);
  const form = $("#filters");
  for (const k of FILTERS) if (params.has(k)) form.elements[k].value = params.get(k);
  readFilters();
  form.addEventListener("submit", (e) => { e.preventDefault(); readFilters(); refresh(); });
  form.addEventListener("reset", () => setTimeout(() => { readFilters(); refresh(); }));
  $("#drill-close").addEventListener("click", () => { state.drill = null; $("#drill").hidden = true; });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && state.drill && !document.querySelector("dialog[open]")) {
      state.drill = null;
      $("#drill").hidden = true;
    }
  });
  window.addEventListener("hashchange", () => {
    state.drill = null;
    $("#drill").hidden = true;
    route();
    refresh();
  });
  route();
  try {
    state.attack = await api("/ui/attack");
    state.names = names();
  } catch (e) {
    showError(e.message);
    return;
  }
  await refresh();
  // For the browser tests: when the first view was on screen.
  window.ttpFirstRender = performance.now();
  document.body.dataset.ready = "1";
  live();
}

main();
