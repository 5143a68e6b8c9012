// The Simpul command centre: polls /console/state every 2 s and draws it. Counters arrive
// cumulative; rates and windowed latency are computed here between two polls. Everything
// from the gateway is put into the page as text (textContent), never as markup.
"use strict";

(function () {
  const POLL_MS = 2000;
  const KEEP = 150; // points on the charts: 5 minutes
  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else e.setAttribute(k, v);
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function fill(tbody, rows) {
    tbody.replaceChildren(...rows);
  }

  const fmt = {
    n(v) {
      return Number(v || 0).toLocaleString("en-US", { maximumFractionDigits: 2 });
    },
    rate(v) {
      return v === null ? "–" : Number(v).toLocaleString("en-US", { maximumFractionDigits: 1 });
    },
    ms(seconds) {
      if (seconds === null || seconds === undefined) return "–";
      const ms = seconds * 1000;
      return ms < 10 ? ms.toFixed(2) + " ms" : ms < 1000 ? ms.toFixed(0) + " ms" : (ms / 1000).toFixed(2) + " s";
    },
    bytes(b) {
      if (b === null || b === undefined) return "–";
      const units = ["B", "KiB", "MiB", "GiB", "TiB"];
      let i = 0;
      while (b >= 1024 && i < units.length - 1) { b /= 1024; i++; }
      return (i ? b.toFixed(1) : b) + " " + units[i];
    },
    time(ms) {
      return ms ? new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z") : "–";
    },
    short(hash) {
      return hash && hash.length > 16 ? hash.slice(0, 16) + "…" : hash || "–";
    },
  };

  function sum(rows, pred) {
    return rows.filter(pred || (() => true)).reduce((a, r) => a + Number(r.value || 0), 0);
  }

  // Prometheus's histogram_quantile over cumulative [le, count] buckets (le null: +Inf).
  function quantile(q, buckets) {
    if (!buckets.length) return null;
    const total = buckets[buckets.length - 1][1];
    if (total <= 0) return null;
    const rank = q * total;
    let lower = 0, below = 0;
    for (const [le, count] of buckets) {
      if (count >= rank) {
        if (le === null) return lower;
        const within = count - below;
        return lower + (le - lower) * (within > 0 ? (rank - below) / within : 1);
      }
      lower = le; below = count;
    }
    return lower;
  }

  // Buckets of every histogram of `role`, added up (every histogram has the same bounds).
  function merged(latency, role) {
    const out = new Map();
    for (const h of latency) {
      if (role && h.role !== role) continue;
      for (const [le, c] of h.buckets) out.set(le, (out.get(le) || 0) + c);
    }
    return [...out.entries()].sort((a, b) => (a[0] === null ? 1 : b[0] === null ? -1 : a[0] - b[0]));
  }

  function minus(now, before) {
    const was = new Map(before);
    return now.map(([le, c]) => [le, c - (was.get(le) || 0)]);
  }

  // Charts --------------------------------------------------------------------------------

  const RATE_SERIES = [
    ["as provider, answered", "#1f7a4d", (r) => r.role === "provider" && r.outcome === "ok"],
    ["as provider, refused", "#d2452f", (r) => r.role === "provider" && r.outcome !== "ok"],
    ["as consumer, answered", "#2c6fbb", (r) => r.role === "consumer" && r.outcome === "ok"],
    ["as consumer, refused", "#e39b2d", (r) => r.role === "consumer" && r.outcome !== "ok"],
  ];
  const LATENCY_SERIES = [
    ["provider p50", "#1f7a4d", "provider", 0.5, []],
    ["provider p99", "#1f7a4d", "provider", 0.99, [6, 4]],
    ["consumer p50", "#2c6fbb", "consumer", 0.5, []],
    ["consumer p99", "#2c6fbb", "consumer", 0.99, [6, 4]],
  ];
  const rateData = [[], ...RATE_SERIES.map(() => [])];
  const latencyData = [[], ...LATENCY_SERIES.map(() => [])];
  let rateChart = null, latencyChart = null;

  function chart(target, series, data) {
    if (typeof uPlot === "undefined") return null;
    const width = Math.max(280, target.clientWidth || 600);
    return new uPlot(
      {
        width,
        height: 220,
        legend: { live: false },
        cursor: { drag: { x: false, y: false } },
        scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.15)] } },
        axes: [{ stroke: "#5b6473", grid: { stroke: "#eef0f3" } }, { stroke: "#5b6473", grid: { stroke: "#eef0f3" }, size: 50 }],
        series: [{}, ...series.map(([label, color, , , dash]) => ({
          label, stroke: color, width: 2, dash: Array.isArray(dash) ? dash : undefined, spanGaps: false,
          points: { show: false },
        }))],
      },
      data,
      target,
    );
  }

  function push(data, t, values) {
    data[0].push(t);
    values.forEach((v, i) => data[i + 1].push(v));
    if (data[0].length > KEEP) data.forEach((s) => s.shift());
  }

  // Panels --------------------------------------------------------------------------------

  let prev = null;

  function tiles(s, perSecond) {
    const ok = sum(s.exchanges, (r) => r.outcome === "ok");
    const refused = sum(s.exchanges, (r) => r.outcome !== "ok") + sum(s.refused_before_authentication);
    const all = merged(s.latency, null);
    const hits = sum(s.cache.hits), misses = sum(s.cache.misses);
    const open = sum(s.connections);
    const tile = (key, label, value, hint) =>
      el("div", { class: "tile", "data-tile": key }, el("div", { class: "label" }, label), el("div", { class: "value" }, value), el("div", { class: "hint" }, hint));
    $("tiles").replaceChildren(
      tile("rate", "exchanges / s", fmt.rate(perSecond), "all contracts, both roles"),
      tile("answered", "answered", fmt.n(ok), "since the gateway started"),
      tile("refused", "refused", fmt.n(refused), "every reason, before authentication too"),
      tile("p99", "p99 latency", fmt.ms(quantile(0.99, all)), "p50 " + fmt.ms(quantile(0.5, all))),
      tile("cache", "cache hit ratio", hits + misses ? Math.round((100 * hits) / (hits + misses)) + " %" : "–", fmt.n(s.cache.entries) + (s.cache.entries === 1 ? " answer" : " answers") + " cached"),
      tile("records", "audit records", fmt.n(s.audit.records), "in this member's log"),
      tile("connections", "open connections", fmt.n(open), "all listeners"),
    );
  }

  function groupExchanges(rows) {
    const groups = new Map();
    for (const r of rows) {
      const key = [r.contract, r.peer, r.role].join("|");
      const g = groups.get(key) || { contract: r.contract, peer: r.peer, role: r.role, ok: 0, refused: 0, reasons: {} };
      const v = Number(r.value);
      if (r.outcome === "ok") g.ok += v;
      else { g.refused += v; g.reasons[r.outcome] = (g.reasons[r.outcome] || 0) + v; }
      groups.set(key, g);
    }
    return groups;
  }

  function exchanges(s, dt) {
    const now = groupExchanges(s.exchanges);
    const before = prev ? groupExchanges(prev.exchanges) : new Map();
    const keys = [...now.keys()].sort();
    fill($("exchanges").tBodies[0], keys.length ? keys.map((key) => {
      const g = now.get(key);
      const b = before.get(key);
      const rate = prev && dt > 0 ? (g.ok + g.refused - (b ? b.ok + b.refused : 0)) / dt : null;
      const reasons = Object.entries(g.reasons).map(([k, v]) => k + " " + fmt.n(v)).join(", ");
      return el("tr", { "data-key": key },
        el("td", { "data-col": "contract" }, el("code", {}, g.contract || "(no contract)")),
        el("td", { "data-col": "peer" }, el("code", {}, g.peer || "(unknown)")),
        el("td", { "data-col": "role" }, el("span", { class: "tag " + g.role }, g.role)),
        el("td", { class: "num", "data-col": "ok" }, fmt.n(g.ok)),
        el("td", { class: "num" + (g.refused ? " bad" : ""), "data-col": "refused" }, fmt.n(g.refused)),
        el("td", { class: "num", "data-col": "rate" }, fmt.rate(rate)),
        el("td", { "data-col": "reasons", class: "small" }, reasons || "–"));
    }) : [el("tr", {}, el("td", { colspan: "7", class: "empty" }, "No exchange recorded yet."))]);
  }

  function refusals(s) {
    const by = new Map();
    for (const r of s.exchanges.filter((r) => r.outcome !== "ok")) {
      const key = r.outcome + "|as " + r.role;
      by.set(key, (by.get(key) || 0) + Number(r.value));
    }
    for (const r of s.refused_before_authentication) {
      const key = r.outcome + "|before authentication";
      by.set(key, (by.get(key) || 0) + Number(r.value));
    }
    const rows = [...by.entries()].sort((a, b) => b[1] - a[1]);
    fill($("refusals").tBodies[0], rows.length ? rows.map(([key, n]) => {
      const [reason, where] = key.split("|");
      return el("tr", { "data-key": key }, el("td", {}, el("code", {}, reason)), el("td", {}, where), el("td", { class: "num", "data-col": "count" }, fmt.n(n)));
    }) : [el("tr", {}, el("td", { colspan: "3", class: "empty" }, "No refusal. "))]);
  }

  function latency(s) {
    fill($("latency").tBodies[0], s.latency.length ? s.latency.map((h) =>
      el("tr", { "data-key": h.contract + "|" + h.role },
        el("td", {}, el("code", {}, h.contract || "(no contract)")),
        el("td", {}, el("span", { class: "tag " + h.role }, h.role)),
        el("td", { class: "num", "data-col": "count" }, fmt.n(h.count)),
        el("td", { class: "num" }, fmt.ms(h.p50)),
        el("td", { class: "num" }, fmt.ms(h.p90)),
        el("td", { class: "num" }, fmt.ms(h.p99)))
    ) : [el("tr", {}, el("td", { colspan: "6", class: "empty" }, "No exchange timed yet."))]);
  }

  function dl(target, pairs) {
    target.replaceChildren(...pairs.flatMap(([k, key, v, cls]) => [el("dt", {}, k), el("dd", { "data-k": key, class: cls || "" }, v)]));
  }

  function cacheAndLimits(s) {
    const hits = sum(s.cache.hits), misses = sum(s.cache.misses);
    const admission = s.limits.admission_refused.map((r) => r.limit + " " + fmt.n(r.value)).join(", ");
    dl($("cache"), [
      ["answers cached", "cache-entries", fmt.n(s.cache.entries)],
      ["their size", "cache-bytes", fmt.bytes(s.cache.bytes)],
      ["hits / misses", "cache-hits", fmt.n(hits) + " / " + fmt.n(misses)],
      ["evicted for space", "cache-evictions", fmt.n(s.cache.evictions)],
      ["refused before the body (admission)", "admission", admission || "none"],
    ]);
    const contracts = new Set();
    for (const part of [s.cache.hits, s.cache.misses, s.limits.rate_admitted, s.limits.rate_limited, s.limits.bulkhead_rejected]) for (const r of part) contracts.add(r.contract);
    const of = (rows, c) => sum(rows, (r) => r.contract === c);
    fill($("limits").tBodies[0], contracts.size ? [...contracts].sort().map((c) =>
      el("tr", { "data-key": c },
        el("td", {}, el("code", {}, c)),
        el("td", { class: "num" }, fmt.n(of(s.cache.hits, c))),
        el("td", { class: "num" }, fmt.n(of(s.cache.misses, c))),
        el("td", { class: "num" }, fmt.n(of(s.limits.rate_admitted, c))),
        el("td", { class: "num" + (of(s.limits.rate_limited, c) ? " bad" : "") }, fmt.n(of(s.limits.rate_limited, c))),
        el("td", { class: "num" }, fmt.n(of(s.limits.bulkhead_rejected, c))))
    ) : [el("tr", {}, el("td", { colspan: "6", class: "empty" }, "This gateway provides no contract."))]);
  }

  function connections(s) {
    const listeners = [...new Set([...s.connections, ...s.handshakes].map((r) => r.listener))].sort();
    const hs = (l, result) => sum(s.handshakes, (r) => r.listener === l && r.result === result);
    fill($("connections").tBodies[0], listeners.map((l) =>
      el("tr", { "data-key": l },
        el("td", {}, l),
        el("td", { class: "num" }, fmt.n(sum(s.connections, (r) => r.listener === l))),
        el("td", { class: "num" }, fmt.n(hs(l, "completed"))),
        el("td", { class: "num" + (hs(l, "failed") ? " warn" : "") }, fmt.n(hs(l, "failed"))),
        el("td", { class: "num" }, fmt.n(hs(l, "timed-out"))))));
  }

  function audit(s) {
    const a = s.audit, h = a.tree_head;
    const append = a.append[0];
    let verified;
    if (!h) verified = ["none signed yet", "", "muted"];
    else if (h.error) verified = [h.error, "", "bad"];
    else if (h.verified) verified = ["✓ verifies with " + s.member + "'s key in the manifest", "", "good"];
    else verified = ["✗ does not verify: " + (h.verify_error || ""), "", "bad"];
    dl($("audit"), [
      ["latest signed tree head", "tree-size", h && !h.error ? fmt.n(h.tree_size) + " records" : "–"],
      ["its root hash", "root-hash", h && !h.error ? fmt.short(h.root_hash) : "–"],
      ["signed at", "signed-at", h && !h.error ? fmt.time(h.timestamp_ms) : "–"],
      ["signature", "verified", verified[0], verified[2]],
      ["records in the log", "records", fmt.n(a.records)],
      ["tables behind the journal", "tables-behind", fmt.n(a.tables_behind), a.tables_behind > 1000 ? "warn" : ""],
      ["store on disk", "store-bytes", fmt.bytes(a.store_bytes)],
      ["append p99", "append-p99", append ? fmt.ms(append.p99) : "–"],
      ["appends that failed", "append-failures", fmt.n(a.append_failures), a.append_failures ? "bad" : ""],
      ["tampering", "tampered", a.tampered ? "✗ " + a.tampered : "none found", a.tampered ? "bad" : "good"],
    ]);
    const pill = $("pill-audit");
    const bad = a.tampered || (h && (h.error || !h.verified));
    pill.className = "pill " + (bad ? "bad" : "good");
    pill.textContent = a.tampered ? "audit log tampered with"
      : h && h.verified ? "audit log: signed head of " + fmt.n(h.tree_size) + " records verifies"
      : "audit log: " + fmt.n(a.records) + " records";
  }

  function witness(s) {
    const w = s.witness;
    if (w.error) {
      fill($("witness").tBodies[0], [el("tr", {}, el("td", { colspan: "5", class: "bad" }, w.error))]);
      return;
    }
    fill($("witness").tBodies[0], w.partners.length ? w.partners.map((p) =>
      el("tr", { "data-key": p.member },
        el("td", {}, el("code", {}, p.member)),
        el("td", { class: "num", "data-col": "size" }, p.tree_size === undefined ? "–" : fmt.n(p.tree_size)),
        el("td", {}, fmt.time(p.timestamp_ms)),
        el("td", {}, fmt.time(p.received_at_ms)),
        el("td", { class: p.forked ? "bad" : "good" }, p.forked ? "✗ forked: " + (p.fork_reason || "") : "✓ consistent"))
    ) : [el("tr", {}, el("td", { colspan: "5", class: "empty" }, "No partner's head held yet: heads arrive with exchanges."))]);
  }

  function events(s) {
    const e = s.events;
    if (e.error) {
      fill($("events").tBodies[0], [el("tr", {}, el("td", { colspan: "5", class: "bad" }, e.error))]);
      return;
    }
    const failing = (x) => x.attempts > 0
      ? el("td", { class: "warn" }, x.attempts + " failed tries: " + (x.last_error || ""))
      : el("td", { class: "good" }, "✓ up to date");
    const rows = e.subscriptions.map((c) =>
      el("tr", { "data-key": "sub " + c.contract + " " + c.subscriber },
        el("td", {}, el("code", {}, c.contract), " to ", el("code", {}, c.subscriber)),
        el("td", { class: "num", "data-col": "backlog" }, fmt.n(c.backlog)),
        el("td", { class: "num", "data-col": "lag" }, c.backlog ? (c.lag_ms / 1000).toFixed(1) + " s" : "–"),
        el("td", {}, c.last_delivered ? fmt.time(c.last_delivered_at_ms) : "none yet"),
        failing(c))).concat(e.webhooks.map((h) =>
      el("tr", { "data-key": "hook " + h.webhook },
        el("td", {}, "webhook ", el("code", {}, h.webhook)),
        el("td", { class: "num", "data-col": "backlog" }, fmt.n(h.backlog)),
        el("td", { class: "num" }, "–"),
        el("td", {}, h.last_posted_at_ms ? fmt.time(h.last_posted_at_ms) : "none yet"),
        failing(h))));
    fill($("events").tBodies[0], rows.length ? rows
      : [el("tr", {}, el("td", { colspan: "5", class: "empty" }, "This gateway delivers no events and posts to no webhook."))]);
  }

  function members(s) {
    const breakers = new Map(s.breakers.map((b) => [b.provider, b]));
    const witnessed = new Map((s.witness.partners || []).map((p) => [p.member, p]));
    const heard = new Map((s.federation.heard || []).map((h) => [h.member, h]));
    for (const row of $("members").tBodies[0].rows) {
      const id = row.getAttribute("data-member");
      const cell = (col) => row.querySelector('[data-col="' + col + '"]');
      if (id === s.member) {
        cell("breaker").textContent = "–";
        cell("manifest").textContent = "serial " + s.federation.serial + " (this gateway's)";
        cell("witnessed").textContent = fmt.n(s.audit.records) + " records (its own)";
        cell("traffic").textContent = "–";
        continue;
      }
      const b = breakers.get(id);
      const state = b ? b.state : "none";
      cell("breaker").replaceChildren(el("span", { class: "tag breaker-" + state }, state), b && b.fail_fast ? " " + fmt.n(b.fail_fast) + " failed fast" : "");
      const h = heard.get(id);
      cell("manifest").replaceChildren(h
        ? el("span", { class: h.serial === s.federation.serial ? "good" : "warn" },
            "serial " + h.serial + (h.serial === s.federation.serial ? "" : h.serial > s.federation.serial ? " (newer)" : " (older)") + ", heard " + fmt.time(h.at_ms))
        : "not heard from yet");
      const p = witnessed.get(id);
      cell("witnessed").textContent = p ? (p.forked ? "✗ forked" : fmt.n(p.tree_size) + " records, received " + fmt.time(p.received_at_ms)) : "no head held yet";
      const ok = sum(s.exchanges, (r) => r.peer === id && r.outcome === "ok");
      const refused = sum(s.exchanges, (r) => r.peer === id && r.outcome !== "ok");
      cell("traffic").textContent = fmt.n(ok) + " answered, " + fmt.n(refused) + " refused";
    }
    $("serial").textContent = s.federation.serial;
    const left = s.federation.expires_at - s.now_ms / 1000;
    const pill = $("pill-manifest");
    pill.className = "pill " + (left <= 0 ? "bad" : left < 7 * 86400 ? "warn" : "good");
    pill.textContent = "manifest serial " + s.federation.serial + (left <= 0 ? ", expired: every exchange is refused" : ", expires in " + Math.floor(left / 86400) + " days");
  }

  function charts(s, dt) {
    const t = s.now_ms / 1000;
    if (prev && dt > 0) {
      push(rateData, t, RATE_SERIES.map(([, , pred]) => Math.max(0, (sum(s.exchanges, pred) - sum(prev.exchanges, pred)) / dt)));
      push(latencyData, t, LATENCY_SERIES.map(([, , role, q]) => {
        const window = minus(merged(s.latency, role), merged(prev.latency, role));
        const v = quantile(q, window);
        return v === null ? null : v * 1000;
      }));
    }
    if (!rateChart) rateChart = chart($("chart-rate"), RATE_SERIES, rateData);
    else rateChart.setData(rateData);
    if (!latencyChart) latencyChart = chart($("chart-latency"), LATENCY_SERIES, latencyData);
    else latencyChart.setData(latencyData);
  }

  function render(s) {
    const dt = prev ? (s.now_ms - prev.now_ms) / 1000 : 0;
    const perSecond = prev && dt > 0 ? (sum(s.exchanges) - sum(prev.exchanges)) / dt : null;
    tiles(s, perSecond);
    exchanges(s, dt);
    refusals(s);
    latency(s);
    cacheAndLimits(s);
    connections(s);
    audit(s);
    witness(s);
    events(s);
    members(s);
    charts(s, dt);
    prev = s;
    const pill = $("pill-updated");
    pill.className = "pill";
    pill.textContent = "updated " + new Date(s.now_ms).toLocaleTimeString("en-GB");
  }

  async function poll() {
    try {
      const r = await fetch("/console/state", { credentials: "same-origin", cache: "no-store" });
      if (!r.ok) throw new Error(r.status + " " + ((await r.json().catch(() => ({}))).detail || r.statusText));
      render(await r.json());
    } catch (e) {
      const pill = $("pill-updated");
      pill.className = "pill bad";
      pill.textContent = "cannot update: " + e.message;
    }
    setTimeout(poll, POLL_MS);
  }

  // Search (auditors) -----------------------------------------------------------------------

  const RECORD_FIELDS = ["exchange_id", "seq", "ts", "role", "consumer", "provider", "contract", "version", "purpose", "outcome", "latency_us", "subsystem", "peer", "lookup_id", "request_hash", "response_hash", "subject", "user"];

  async function search(event) {
    event.preventDefault();
    const id = $("search-id").value.trim();
    const out = $("search-result");
    if (!id) return;
    history.replaceState(null, "", "/console/?exchange_id=" + encodeURIComponent(id));
    out.replaceChildren(el("p", { class: "muted" }, "Searching…"));
    try {
      const r = await fetch("/audit/inclusion?exchange_id=" + encodeURIComponent(id), { credentials: "same-origin", cache: "no-store" });
      const body = await r.json();
      if (!r.ok) {
        out.replaceChildren(el("p", { class: "bad" }, (body.title || r.status) + ": " + (body.detail || "")));
        return;
      }
      out.replaceChildren(...body.proofs.map((p) => {
        const rec = p.record || {};
        const rows = RECORD_FIELDS.filter((k) => rec[k] !== undefined && rec[k] !== null).map((k) =>
          el("tr", {}, el("th", {}, k), el("td", {}, el("code", {}, k === "ts" ? fmt.time(rec[k]) : String(rec[k])))));
        return el("div", { class: "proof" },
          el("h3", {}, "Record " + p.seq + " — " + (rec.role || "") + ", " + (rec.outcome || "")),
          el("table", { class: "record" }, el("tbody", {}, ...rows)),
          el("p", { class: "small" }, "Included in the tree of " + fmt.n(p.tree_size) + " records: leaf ", el("code", {}, fmt.short(p.leaf_hash)), ", audit path of " + p.path.length + " hashes ",
            el("code", { class: "path" }, p.path.map(fmt.short).join(" · "))));
      }));
    } catch (e) {
      out.replaceChildren(el("p", { class: "bad" }, "cannot search: " + e.message));
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const form = $("search");
    if (form) {
      form.addEventListener("submit", search);
      // `?exchange_id=` searches as the page loads: a search can be linked to.
      const wanted = new URLSearchParams(location.search).get("exchange_id");
      if (wanted) {
        $("search-id").value = wanted;
        search(new Event("submit"));
      }
    }
    poll();
  });
})();
