// switchyard admin pages: the dashboard (/) and the dtab playground
// (/delegator). Plain JS, no framework, nothing fetched from outside.
"use strict";

const REFRESH_MS = 2000;

/** el("td", {class: "num"}, "1", child...): a DOM element. */
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "open" || k === "hidden") e[k] = true;
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

/** GET url → {ok, status, data} (JSON) or {ok: false, status, error} (text). */
async function getJson(url) {
  try {
    const r = await fetch(url, { cache: "no-store" });
    const body = await r.text();
    if (!r.ok) return { ok: false, status: r.status, error: body.trim() || r.statusText };
    try {
      return { ok: true, status: r.status, data: JSON.parse(body) };
    } catch (e) {
      return { ok: false, status: r.status, error: "not JSON: " + e.message };
    }
  } catch (e) {
    return { ok: false, status: 0, error: "admin server unreachable: " + e.message };
  }
}

function fmtNum(v, digits) {
  if (v === undefined || v === null || Number.isNaN(v)) return "–";
  return v.toLocaleString("en-US", { maximumFractionDigits: digits === undefined ? 0 : digits });
}
function fmtMs(v) {
  if (v === undefined || v === null || Number.isNaN(v)) return "–";
  return (v < 10 ? v.toFixed(2) : v.toFixed(0)) + " ms";
}
function fmtPct(v) {
  return v === undefined || v === null ? "–" : v.toFixed(v === 100 ? 0 : 1) + "%";
}
function setStatus(text, stale) {
  const s = document.getElementById("status");
  if (!s) return;
  s.textContent = text;
  s.classList.toggle("stale", !!stale);
}

// === the dashboard ===

/**
 * metrics.json's `rt/<router>/<stat>` and `rt/<router>/<kind>/<name...>/<stat>`
 * keys → {router: {stats, server: {name: stats}, service: {...}, client: {...}}}.
 */
function parseMetrics(m) {
  const routers = {};
  for (const [k, v] of Object.entries(m || {})) {
    if (!k.startsWith("rt/") || typeof v !== "number") continue;
    const parts = k.split("/");
    if (parts.length < 3) continue;
    const r = (routers[parts[1]] ||= { stats: {}, server: {}, service: {}, client: {} });
    const stat = parts[parts.length - 1];
    if (parts.length === 3) {
      r.stats[stat] = v;
      continue;
    }
    const kind = parts[2];
    if (!["server", "service", "client"].includes(kind) || parts.length < 5) continue;
    const name = (kind === "server" ? "" : "/") + parts.slice(3, -1).join("/");
    (r[kind][name] ||= {})[stat] = v;
  }
  return routers;
}

const Dashboard = {
  prev: null, // {at, counts: {scopeKey: requests}}

  async refresh() {
    const [metrics, clients, dtabs] = await Promise.all([
      getJson("/admin/metrics.json"),
      getJson("/client_state.json"),
      getJson("/dtabs.json"),
    ]);
    const now = Date.now();
    const parsed = metrics.ok ? parseMetrics(metrics.data) : null;
    const labels = new Set();
    if (parsed) Object.keys(parsed).forEach((l) => labels.add(l));
    if (clients.ok) Object.keys(clients.data).forEach((l) => labels.add(l));
    if (dtabs.ok) Object.keys(dtabs.data).forEach((l) => labels.add(l));

    const counts = {};
    const rate = (key, requests) => {
      if (requests === undefined) return undefined;
      counts[key] = requests;
      if (!this.prev || this.prev.counts[key] === undefined) return undefined;
      const dt = (now - this.prev.at) / 1000;
      return dt > 0 ? Math.max(0, requests - this.prev.counts[key]) / dt : undefined;
    };
    this.renderRouters([...labels].sort(), parsed, metrics, rate);
    this.renderClients(clients, parsed);
    this.renderDtabs(dtabs);
    this.prev = { at: now, counts };

    const problems = [metrics, clients, dtabs].filter((r) => !r.ok);
    const t = new Date(now).toLocaleTimeString();
    if (problems.length === 3) setStatus("admin server unreachable · " + t, true);
    else setStatus("updated " + t + (metrics.ok ? "" : " · metrics unavailable"), false);
  },

  statsRow(label, s, r) {
    s = s || {};
    const ok = s.success || 0, bad = s.failures || 0;
    const success = ok + bad > 0 ? (100 * ok) / (ok + bad) : undefined;
    return {
      requests: s.requests,
      rate: r,
      success,
      p50: s["request_latency_ms.p50"],
      p95: s["request_latency_ms.p95"],
      p99: s["request_latency_ms.p99"],
    };
  },

  scopeTable(kind, scopes, router, rate) {
    const names = Object.keys(scopes || {}).sort();
    if (names.length === 0) return null;
    const body = names.map((n) => {
      const row = this.statsRow(n, scopes[n], rate(`${router}/${kind}/${n}`, scopes[n].requests));
      return el("tr", { "data-name": n },
        el("td", {}, el("code", {}, n)),
        el("td", { class: "num" }, fmtNum(row.requests)),
        el("td", { class: "num" }, row.rate === undefined ? "–" : fmtNum(row.rate, 1) + "/s"),
        el("td", { class: "num" }, fmtPct(row.success)),
        el("td", { class: "num" }, fmtMs(row.p50)),
        el("td", { class: "num" }, fmtMs(row.p99)));
    });
    return el("table", { class: "scope-" + kind },
      el("thead", {}, el("tr", {},
        el("th", {}, kind), el("th", {}, "requests"), el("th", {}, "rate"),
        el("th", {}, "success"), el("th", {}, "p50"), el("th", {}, "p99"))),
      el("tbody", {}, ...body));
  },

  renderRouters(labels, parsed, metrics, rate) {
    const box = document.getElementById("routers");
    if (labels.length === 0) {
      box.replaceChildren(el("p", { class: "muted" }, "no routers"));
      return;
    }
    const cards = labels.map((label) => {
      const m = parsed ? parsed[label] : null;
      const row = this.statsRow(label, m && m.stats, rate(label, m && m.stats.requests));
      const stat = (cls, v, k) => el("div", { class: "stat " + cls }, el("span", { class: "v" }, v), el("span", { class: "k" }, k));
      const card = el("div", { class: "card router-card", "data-router": label },
        el("h3", { class: "router-label" }, label));
      if (!metrics.ok) {
        card.append(el("p", { class: "muted" }, "metrics unavailable (" + metrics.error + ")"));
        return card;
      }
      card.append(el("div", { class: "stats" },
        stat("stat-requests", fmtNum(row.requests === undefined ? 0 : row.requests), "requests"),
        stat("stat-rate", row.rate === undefined ? "–" : fmtNum(row.rate, 1) + "/s", "request rate"),
        stat("stat-success", fmtPct(row.success), "success rate"),
        stat("stat-p50", fmtMs(row.p50), "p50"),
        stat("stat-p95", fmtMs(row.p95), "p95"),
        stat("stat-p99", fmtMs(row.p99), "p99")));
      for (const kind of ["service", "client"]) {
        const t = m && this.scopeTable(kind, m[kind], label, rate);
        if (t) card.append(t);
      }
      return card;
    });
    box.replaceChildren(...cards);
  },

  renderClients(clients, parsed) {
    const box = document.getElementById("clients");
    if (!clients.ok) {
      box.replaceChildren(el("p", { class: "error" }, "client state unavailable: " + clients.error));
      return;
    }
    const cards = [];
    for (const label of Object.keys(clients.data).sort()) {
      const cs = clients.data[label] || {};
      const names = Object.keys(cs).sort();
      const rows = names.map((n) => {
        const c = cs[n] || {};
        const eps = (c.endpoints || []).map((e) =>
          el("li", { class: "endpoint" }, el("code", {}, e.addr),
            el("span", { class: "muted" }, ` weight ${fmtNum(e.weight, 2)} · ${fmtNum(e.outstanding)} outstanding`)));
        return el("tr", { class: "client-row", "data-client": n },
          el("td", {}, el("code", {}, n)),
          el("td", {}, el("span", { class: "badge state-" + c.state }, c.state || "?"),
            c.message ? el("div", { class: "message" }, c.message) : null),
          el("td", {}, eps.length ? el("ul", { class: "endpoints" }, ...eps) : el("span", { class: "muted" }, "no endpoints")));
      });
      cards.push(el("div", { class: "card", "data-router": label },
        el("h3", {}, label),
        rows.length
          ? el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "client"), el("th", {}, "state"), el("th", {}, "endpoints"))),
              el("tbody", {}, ...rows))
          : el("p", { class: "muted" }, "no clients yet (a client is made on the first request to a name)")));
    }
    box.replaceChildren(...(cards.length ? cards : [el("p", { class: "muted" }, "no routers")]));
  },

  renderDtabs(dtabs) {
    const box = document.getElementById("dtabs");
    if (!dtabs.ok) {
      box.replaceChildren(el("p", { class: "error" }, "dtabs unavailable: " + dtabs.error));
      return;
    }
    const cards = Object.keys(dtabs.data).sort().map((label) => {
      const d = dtabs.data[label] || {};
      const card = el("div", { class: "card dtab-card", "data-router": label },
        el("h3", {}, label),
        el("pre", { class: "dtab" }, (d.dtab || "").split(";").join(";\n") || "(empty)"));
      if (d.file) {
        const f = d.file;
        let last = el("span", { class: "muted" }, "no reload yet");
        if (f.last) {
          const at = new Date(f.last.atMs).toLocaleString();
          last = f.last.ok
            ? el("span", {}, el("span", { class: "badge ok" }, "loaded"), " at " + at)
            : el("span", {}, el("span", { class: "badge bad" }, "rejected"), " at " + at + " (the previous dtab stays in service)",
                el("pre", { class: "reload-error" }, f.last.error || ""));
        }
        card.append(el("p", { class: "reload" },
          "from ", el("code", {}, f.path), ` · ${fmtNum(f.reloads)} reloads, ${fmtNum(f.rejections)} rejected · last: `, last));
      } else {
        card.append(el("p", { class: "muted" }, "from the router's config"));
      }
      return card;
    });
    box.replaceChildren(...(cards.length ? cards : [el("p", { class: "muted" }, "no routers")]));
  },

  start() {
    const tick = async () => {
      try {
        await this.refresh();
      } catch (e) {
        setStatus("refresh failed: " + e.message, true);
      }
      setTimeout(tick, REFRESH_MS);
    };
    tick();
  },
};

// === the delegator ===

/** One delegation node as an expandable <details> tree. */
function renderNode(n, weight) {
  if (!n || typeof n !== "object") return el("div", { class: "node" }, String(n));
  const type = n.type || "?";
  const summary = el("summary", {});
  if (weight !== undefined) summary.append(el("span", { class: "weight" }, fmtNum(weight, 3) + "×"));
  summary.append(el("span", { class: "kind" }, type), " ", el("code", { class: "path" }, n.path || ""));
  if (n.dentry) {
    summary.append(el("span", { class: "dentry" }, "dentry ",
      el("code", {}, `${n.dentry.prefix}=>${n.dentry.dst}`)));
  }
  const node = el("details", { class: "node kind-" + type, open: true }, summary);
  const bound = n.bound;
  if (type === "transformation" && n.name) {
    node.append(el("div", { class: "leaf-info" }, "transformer ", el("code", {}, n.name)));
  }
  if (bound && typeof bound === "object") node.append(renderBound(bound));
  else if (bound) node.append(el("div", { class: "leaf-info" }, "bound to ", el("code", {}, String(bound))));
  if (n.message) node.append(el("div", { class: "message" }, n.message));
  if (n.delegate) node.append(renderNode(n.delegate));
  if (n.tree) node.append(renderNode(n.tree));
  for (const c of n.alt || []) node.append(renderNode(c));
  for (const c of n.union || []) node.append(renderNode(c.tree, c.weight));
  if (n.bound && n.bound.id !== undefined) node.classList.add("has-bound");
  return node;
}

/** `{addr: {type, addrs: [{ip, port}]}, id, path}` → id, residual, endpoints. */
function renderBound(b) {
  const box = el("div", { class: "leaf-info" }, "bound id ", el("code", { class: "bound-id" }, b.id || "?"));
  if (b.path && b.path !== "/") box.append(" residual ", el("code", {}, b.path));
  const a = b.addr || {};
  if (a.type === "bound") {
    const eps = (a.addrs || []).map((x) => el("li", { class: "endpoint" }, el("code", {}, `${x.ip}:${x.port}`)));
    box.append(eps.length ? el("ul", { class: "endpoints" }, ...eps) : el("div", { class: "muted" }, "no endpoints"));
  } else if (a.type === "failed") {
    box.append(el("div", { class: "message" }, "address failed: " + (a.cause || "")));
  } else if (a.type) {
    box.append(" ", el("span", { class: "badge state-" + a.type }, a.type));
  }
  return box;
}

const Delegator = {
  async start() {
    const select = document.getElementById("router");
    const [config, dtabs] = await Promise.all([getJson("/config.json"), getJson("/dtabs.json")]);
    this.dtabs = dtabs.ok ? dtabs.data : {};
    let labels = [];
    if (config.ok && Array.isArray(config.data && config.data.routers)) {
      labels = config.data.routers.map((r) => r.label || r.protocol).filter(Boolean);
    }
    if (labels.length === 0) labels = Object.keys(this.dtabs);
    select.replaceChildren(...labels.map((l) => el("option", { value: l }, l)));
    const q = new URLSearchParams(location.search);
    if (q.get("router")) select.value = q.get("router");
    if (q.get("path")) document.getElementById("path").value = q.get("path");
    if (q.get("dtab")) document.getElementById("dtab").value = q.get("dtab");
    select.addEventListener("change", () => this.showBase());
    this.showBase();
    document.getElementById("delegate-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.run();
    });
    if (q.get("path")) this.run();
  },

  showBase() {
    const label = document.getElementById("router").value;
    const d = this.dtabs && this.dtabs[label];
    const box = document.getElementById("base-dtab");
    box.replaceChildren(d
      ? el("details", {}, el("summary", {}, "router dtab"), el("pre", {}, (d.dtab || "").split(";").join(";\n") || "(empty)"))
      : "");
  },

  async run() {
    const router = document.getElementById("router").value;
    const path = document.getElementById("path").value.trim();
    const dtab = document.getElementById("dtab").value.trim();
    const err = document.getElementById("error");
    const result = document.getElementById("result");
    err.hidden = true;
    err.replaceChildren();
    if (!path) {
      err.hidden = false;
      err.append("Enter a path to delegate, e.g. /svc/web");
      return;
    }
    const q = new URLSearchParams({ router, path });
    if (dtab) q.set("dtab", dtab);
    history.replaceState(null, "", "/delegator?" + q.toString());
    result.replaceChildren(el("p", { class: "muted" }, "delegating…"));
    const r = await getJson("/delegator.json?" + q.toString());
    if (!r.ok) {
      err.hidden = false;
      const what = r.status === 400 ? "The request was rejected:" : `Delegation failed (${r.status || "no answer"}):`;
      err.append(el("strong", {}, what), el("pre", { class: "error-text" }, r.error));
      result.replaceChildren();
      return;
    }
    result.replaceChildren(el("p", { class: "muted" }, `${path} on router ${router}` + (dtab ? " with the extra dtab" : "")),
      renderNode(r.data));
  },
};

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  if (page === "dashboard") Dashboard.start();
  if (page === "delegator") Delegator.start();
});
