"""The explorer page's HTML, styles and script (filled in by analysis.explore.page_html).

The script only selects and formats: it shows the precomputed figures of the chosen sweep and group, writes the
heatmap's hover text from the group's compact cell table (`analysis.explore.cell_table`: numbers already rounded in
Python to the digits shown, so the text reads as Python's f-strings would write it), filters the advisor's candidate
rows (already ranked by analysis.advise) with the same `value <= limit` test, and lists the trials of the group with a
CSV download. Every number on the page was computed in Python.
"""

TEMPLATE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:system-ui,sans-serif;margin:0 auto;max-width:1400px;padding:0 1em 2em;color:#222}
h1{font-size:1.4em;margin:.6em 0 .2em}h2{font-size:1.15em;margin:1.2em 0 .4em;border-bottom:1px solid #ddd}
#meta{color:#666;font-size:.85em;margin:0}
.controls{display:flex;flex-wrap:wrap;gap:.4em 1.2em;align-items:center;background:#f4f6f8;padding:.6em .8em;
  border-radius:6px;position:sticky;top:0;z-index:10;margin:.6em 0}
.controls label{font-size:.9em}.controls select{margin-left:.3em}
.banner{padding:.5em .8em;border-radius:6px;background:#eef5ff;margin:.5em 0}.banner.warn{background:#fff4d6}
.plots{display:grid;grid-template-columns:repeat(auto-fit,minmax(560px,1fr));gap:.6em}
.plot{min-height:380px;border:1px solid #eee;border-radius:6px}.empty{color:#888;padding:2em;text-align:center}
table{border-collapse:collapse;font-size:.82em}td,th{border:1px solid #ddd;padding:2px 6px;text-align:right}
th{background:#f4f6f8;position:sticky;top:0}td.l,th.l{text-align:left}
.scroll{max-height:420px;overflow:auto;border:1px solid #eee}
.limits{display:flex;flex-wrap:wrap;gap:.5em 2em}.limit{display:flex;flex-direction:column;font-size:.9em}
.limit input[type=number]{width:9em}.limit input[type=range]{width:16em}
#advice-best{font-size:1.02em;margin:.6em 0}#notes{color:#555;font-size:.85em}
</style>
<script src="__PLOTLY__"></script>
</head><body>
<h1>Results explorer</h1>
<p id="meta"></p>
<div class="controls">
  <label>sweep<select id="sweep"></select></label>
  <label>data set<select id="dataset"></select></label>
  <label>family<select id="family"></select></label>
  <label>k<select id="k"></select></label>
  <label>fit<select id="fit"></select></label>
</div>
<div id="status" class="banner"></div>
<p id="est"></p>
<div class="plots">
  <div id="heatmap" class="plot"></div><div id="error" class="plot"></div>
  <div id="tta" class="plot"></div><div id="costs" class="plot"></div>
</div>
<section id="subnets-section"><h2>Sub-networks of the adaptive classes (mutual, coop)</h2>
  <div class="plots"><div id="subnets-macs" class="plot"></div><div id="subnets-latency" class="plot"></div></div>
</section>
<section id="advisor"><h2>Advisor: the most accurate measured design within limits</h2>
  <p>Empty box or slider at its right end = no limit. Same rule as <code>python -m analysis advise</code>: a design
  fits when every measured value is &le; its limit; designs are ranked by mean accuracy over seeds, then latency.</p>
  <div class="limits" id="limits"></div>
  <div id="advice-best"></div>
  <div class="scroll"><table id="advice-list"></table></div>
</section>
<section id="trials-section"><h2>Trials behind this view</h2>
  <p><a id="csv" href="#" download="trials.csv">Download these trials as CSV</a> <span id="trials-count"></span></p>
  <div class="scroll" id="trials-table"></div>
</section>
<h2>Notes</h2><ul id="notes"></ul>
<script type="application/json" id="explorer-data">__DATA__</script>
<script>
"use strict";
const T0 = performance.now();
const D = JSON.parse(document.getElementById("explorer-data").textContent);
const $ = (id) => document.getElementById(id);
const KEYS = ["dataset", "family", "k", "fit"];
const SHOWN_ROWS = 200;  // the table shows this many trials; the CSV has them all
let S = null, G = null;

const ENTITY = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"};
const esc = (v) => String(v ?? "").replace(/[&<>"]/g, (c) => ENTITY[c]);
const num = (v, d) => (v === null || v === undefined) ? "" : (typeof v === "number" ? +v.toPrecision(d || 4) : v);
const pct = (v) => v === null ? "" : (100 * v).toFixed(2);
const params = (v) => v === null ? "n/a" : (v / 1e6).toPrecision(3).replace(/\.?0+$/, "") + "M";

function fill(sel, values, value) {
  sel.innerHTML = "";
  for (const v of values) {
    const o = document.createElement("option");
    o.value = o.textContent = String(v);
    sel.appendChild(o);
  }
  sel.value = String(value);
  sel.disabled = values.length < 2;
}

// --- compact tables (analysis.explore.encode_column) and the numbers' display --------------------------------
const INT_TYPES = {i1: Int8Array, i2: Int16Array, i4: Int32Array};
function column(enc, n) {
  if (Array.isArray(enc)) return enc;
  if ("c" in enc) return new Array(n).fill(enc.c);
  if ("bdata" in enc) {  // little-endian, as every browser's typed arrays (plotly reads its own bdata so too)
    const bytes = Uint8Array.from(atob(enc.bdata), (c) => c.charCodeAt(0));
    const out = Array.from(new INT_TYPES[enc.dtype](bytes.buffer), (v) => v === enc.null ? null : v);
    for (const i of enc.neg0 || []) out[i] = -0;
    return out;
  }
  if ("d" in enc) return column(enc.k, n).map((i) => i === null ? null : enc.d[i]);
  const out = new Array(n).fill(null);
  enc.s.forEach((i, j) => { out[i] = enc.v[j]; });
  return out;
}
// An integer count of 10^-d units (analysis.explore.display_units) as Python's f"{x:.{d}f}" (signed: "+.{d}f").
function fixed(u, d, signed) {
  if (u === null) return (signed ? "+" : "") + "nan";
  const neg = u < 0 || Object.is(u, -0);
  return (neg ? "-" : signed ? "+" : "") + (Math.abs(u) / 10 ** d).toFixed(d);
}
// A number already rounded to 3 significant digits (analysis.explore.three_digits) as Python's f"{x:.3g}".
function g3(v) {
  if (v === null) return "nan";
  if (v === 0) return Object.is(v, -0) ? "-0" : "0";
  const [m, e] = v.toExponential(2).split("e"), x = +e;
  const trim = (s) => s.includes(".") ? s.replace(/\.?0+$/, "") : s;
  if (x < -4 || x >= 3) return trim(m) + "e" + (x < 0 ? "-" : "+") + String(Math.abs(x)).padStart(2, "0");
  return trim(v.toFixed(2 - x));
}

// The hover text of every heatmap cell of group g (rows = epochs, columns = budgets, as the heatmap's z): winner,
// every class's mean ± spread over seeds, seeds, budget deviation, each ensemble class's test against single, the
// runner-up test, the margin under an overlap rule, the EST line.
function hoverText(g) {
  const C = g.cell_table, nb = C.budgets.length, n = nb * C.epochs.length, z = g.figs.heatmap.data[0].z;
  const col = {};
  for (const [k, enc] of Object.entries(C.cols)) col[k] = column(enc, n);
  const at = (k, i) => col[k] ? col[k][i] : null;
  const spread = D.rule === "std" ? "std" : "95% CI", estLines = column(C.est_lines, C.epochs.length);
  return C.epochs.map((e, ei) => C.budgets.map((label, bi) => {
    const i = ei * nb + bi, w = D.categories[z[ei][bi]];
    const how = w === D.missing || at("assessable", i) ? "" : " (a 1-seed class: decided by means only)";
    const lines = [`<b>budget ${label} parameters, epoch ${e}</b>`, `winner: <b>${w}</b>${how}`];
    if (at("marked", i)) {
      lines.push(`<b>marked</b>: ${at("deviating", i)} further than ${at("max_deviation", i)}% from the budget`);
    }
    for (const role of C.roles) {
      const seeds = at("n_" + role, i);
      if (seeds === null) continue;
      const std = at("std_" + role, i) === null ? "" : ` ± ${fixed(at("std_" + role, i), 2)}`;
      const hw = at("hw_" + role, i) === null ? "" : ` (${spread} ± ${fixed(at("hw_" + role, i), 2)})`;
      const dev = C.deviation[role] ? C.deviation[role][bi] : null;
      const devText = dev === null ? "" : `, budget deviation ${fixed(dev, 1, true)}%`;
      const mean = at("mean_" + role, i) === null ? "n/a" : fixed(at("mean_" + role, i), 2);
      lines.push(`${role}: ${mean}%${std}${hw} over ${seeds} seed${seeds !== 1 ? "s" : ""}${devText}`);
    }
    for (const role of C.ensembles) {
      const v = at("verdict_" + role, i);
      if (v === null) continue;
      const lo = at("ci_lo_pp_" + role, i), diff = at("diff_pp_" + role, i);
      const test = lo === null ? "" : ` [${fixed(lo, 2, true)}, ${fixed(at("ci_hi_pp_" + role, i), 2, true)}], ` +
        `adjusted p ${g3(at("p_" + role, i))}, P(outperform) ${fixed(at("p_outperform_" + role, i), 2)}`;
      const diffText = diff === null ? "n/a (fewer than 2 seeds)" : `${fixed(diff, 2, true)} pp`;
      lines.push(`${role} − single: ${diffText}${test}: <b>${v}</b>`);
    }
    if (at("runner_up", i) !== null) {
      lines.push(`${w} − ${at("runner_up", i)}: ${fixed(at("vs_runner_up_pp", i), 2, true)} pp, adjusted p ` +
        `${g3(at("vs_runner_up_p", i))}: <b>${at("vs_runner_up_verdict", i) ?? "nan"}</b>`);
    }
    if (at("margin_pp", i) !== null) {
      const noise = at("noise_pp", i);
      const noiseText = noise === null ? " (no seed noise: 1 seed)" : ` vs seed noise ${fixed(noise, 2)} pp`;
      lines.push(`best ensemble − single: ${fixed(at("margin_pp", i), 2, true)} pp${noiseText}`);
    }
    lines.push(estLines[ei].replace("{epoch}", e));
    return lines.join("<br>");
  }));
}

function plot(id, fig, empty) {
  const el = $(id);
  if (!fig) { Plotly.purge(el); el.innerHTML = '<p class="empty">' + esc(empty) + "</p>"; return; }
  if (el.querySelector(".empty")) el.innerHTML = "";
  const layout = Object.assign({}, fig.layout, {template: D.template, autosize: true});
  Plotly.react(el, fig.data, layout, {responsive: true, displaylogo: false});
}

function showSweep(name) {
  S = D.sweeps[name];
  const st = $("status");
  st.textContent = S.status.message;
  st.className = "banner" + (S.status.only_running || !S.groups.length ? " warn" : "");
  $("notes").innerHTML = S.notes.map((n) => "<li>" + esc(n) + "</li>").join("") || "<li>none</li>";
  $("subnets-section").style.display = S.subnets ? "" : "none";
  if (S.subnets) { plot("subnets-macs", S.subnets.macs); plot("subnets-latency", S.subnets.latency_ms_p50); }
  setupLimits();
  showGroup(S.groups[0] || null);
}

// Pick the group matching every select, else the first one matching the selects up to the one changed.
function onGroupChange(changed) {
  const want = Object.fromEntries(KEYS.map((k) => [k, $(k).value]));
  const upto = KEYS.slice(0, KEYS.indexOf(changed) + 1);
  const same = (g, keys) => keys.every((k) => String(g[k]) === want[k]);
  showGroup(S.groups.find((g) => same(g, KEYS)) || S.groups.find((g) => same(g, upto)) || S.groups[0]);
}

function showGroup(g) {
  G = g;
  KEYS.forEach((k, i) => {
    const pool = g ? S.groups.filter((x) => KEYS.slice(0, i).every((j) => x[j] === g[j])) : [];
    fill($(k), [...new Set(pool.map((x) => x[k]))], g ? g[k] : "");
  });
  const none = "No group with a single network and an ensemble class has epoch rows yet.";
  $("est").textContent = g ? g.est : none;
  if (g && !g.figs.heatmap.data[0].text) g.figs.heatmap.data[0].text = hoverText(g);  // once per group
  plot("heatmap", g && g.figs.heatmap, none);
  plot("error", g && g.figs.error, none);
  plot("tta", g && g.figs.tta, none);
  plot("costs", g && g.figs.costs, "No finished (ok) trials in this group yet: no costs.");
  showTrials();
}

function showTrials() {
  const T = S.trials, rows = G ? G.trials.map((i) => T.rows[i]) : T.rows;
  const left = new Set(["trial_id", "status", "design_class", "role", "family", "mem_source", "device_name", "error"]);
  const cls = (c) => left.has(c) ? ' class="l"' : "";
  const head = "<tr>" + T.columns.map((c) => "<th" + cls(c) + ">" + esc(c) + "</th>").join("") + "</tr>";
  const body = rows.slice(0, SHOWN_ROWS).map((r) => "<tr>" + r.map((v, j) =>
    "<td" + cls(T.columns[j]) + ">" + esc(num(v, 6)) + "</td>").join("") + "</tr>").join("");
  $("trials-table").innerHTML = rows.length ? "<table id=\"trials\">" + head + body + "</table>"
    : '<p class="empty">No finished trials in this view.</p>';
  $("trials-count").textContent = rows.length > SHOWN_ROWS ? `(showing ${SHOWN_ROWS} of ${rows.length})`
    : `(${rows.length} trials)`;
  const q = (v) => {
    const s = v === null ? "" : String(v);
    return /[",\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  };
  const csv = [T.columns, ...rows].map((r) => r.map(q).join(",")).join("\n") + "\n";
  const a = $("csv");
  if (a.href.startsWith("blob:")) URL.revokeObjectURL(a.href);
  a.href = URL.createObjectURL(new Blob([csv], {type: "text/csv"}));
  a.download = `trials_${S.name}${G ? "_" + KEYS.map((k) => G[k]).join("_") : ""}.csv`;
}

// --- advisor: filter the ranked candidates (analysis.advise's design table) by the limits -------------------
const STEPS = 200;
function setupLimits() {
  const A = S.advisor, box = $("limits");
  box.innerHTML = "";
  for (const [name, L] of Object.entries(D.limits)) {
    const j = A.columns.indexOf(L.column);
    const vals = A.rows.map((r) => r[j]).filter((v) => v !== null);
    const top = vals.length ? Math.max(...vals) : 1;
    const div = document.createElement("div");
    div.className = "limit";
    div.innerHTML = `<label for="${name}">max ${esc(L.name)} (${esc(L.unit)})</label>` +
      `<input type="range" id="${name}-range" min="0" max="${STEPS}" step="1" value="${STEPS}">` +
      `<input type="number" id="${name}" min="0" step="any" placeholder="no limit">`;
    box.appendChild(div);
    const range = $(name + "-range"), input = $(name);
    range.dataset.top = top;
    range.addEventListener("input", () => {
      const v = +range.value;
      input.value = v >= STEPS ? "" : String(+(top * v / STEPS).toPrecision(4));
      advise();
    });
    input.addEventListener("input", () => {
      const v = parseFloat(input.value);
      range.value = isFinite(v) ? String(Math.min(STEPS, Math.round(STEPS * v / top))) : String(STEPS);
      advise();
    });
  }
  advise();
}

function limitText(name, v) {
  const L = D.limits[name];
  return `${L.name} <= ${name === "max_params" ? params(v) : v + " " + L.unit}`;
}

function advise() {
  const A = S.advisor, col = (c) => A.columns.indexOf(c);
  const lim = {};
  for (const name of Object.keys(D.limits)) { const v = parseFloat($(name).value); if (isFinite(v)) lim[name] = v; }
  const fits = (r, names) => names.every((n) => {
    const v = r[col(D.limits[n].column)];
    return v !== null && v <= lim[n];
  });
  const names = Object.keys(lim);
  const fitting = A.rows.filter((r) => fits(r, names));
  const limTxt = names.map((n) => limitText(n, lim[n])).join(", ") || "no limits";
  const best = $("advice-best");
  const note = A.devices.length < 2 ? ""
    : ` Note: latency and memory were measured on different devices (${A.devices.join(", ")}).`;
  if (!A.rows.length) {
    best.innerHTML = "No measured designs: the sweep has no trials with status ok yet.";
  } else if (!fitting.length) {
    const alone = names.map((n) => {
      const c = col(D.limits[n].column), vals = A.rows.map((r) => r[c]).filter((v) => v !== null);
      const low = vals.length ? Math.min(...vals) : null;
      const kept = A.rows.filter((r) => fits(r, [n])).length;
      return `${esc(limitText(n, lim[n]))} alone keeps ${kept} of ${A.rows.length}` +
        ` (lowest measured: ${n === "max_params" ? params(low) : num(low) + " " + D.limits[n].unit})`;
    });
    best.innerHTML = `<b>No measured design fits all limits</b> (${esc(limTxt)}).<br>` + alone.join("<br>") + esc(note);
  } else {
    const r = fitting[0];
    best.innerHTML = `Best design within ${esc(limTxt)} (${fitting.length} of ${A.rows.length} designs fit):<br>` +
      `<b id="advice-label">${esc(r[col("label")])}</b>: accuracy ${pct(r[col("acc_mean")])}%, latency p50 ` +
      `${num(r[col("latency_ms_p50")])} ms, peak memory ${num(r[col("peak_mem_mb")])} MB, params ` +
      `${params(r[col("params_total")])}.` + esc(note);
  }
  const head = "<tr><th>rank</th><th class=\"l\">design</th><th>accuracy (%)</th><th>± std (pp)</th><th>seeds</th>" +
    "<th>latency p50 (ms)</th><th>peak memory (MB)</th><th>params</th><th>GFLOPs (10^9 MACs)</th></tr>";
  $("advice-list").innerHTML = head + fitting.slice(0, 5).map((r, i) => `<tr><td>${i + 1}</td>` +
    `<td class="l">${esc(r[col("label")])}</td><td>${pct(r[col("acc_mean")])}</td><td>${pct(r[col("acc_std")])}</td>` +
    `<td>${r[col("n_seeds")]}</td><td>${num(r[col("latency_ms_p50")])}</td><td>${num(r[col("peak_mem_mb")])}</td>` +
    `<td>${params(r[col("params_total")])}</td><td>${num(r[col("gflops")])}</td></tr>`).join("");
}

function init() {
  const t0 = performance.now();  // plotly.min.js is parsed by now; what follows is this page's own work
  if (typeof Plotly === "undefined") {
    document.body.insertAdjacentHTML("afterbegin",
      '<p class="banner warn">plotly.min.js did not load: keep it beside index.html.</p>');
    return;
  }
  $("meta").textContent = `Store ${D.store}, generated ${D.generated}. Verdicts: ${D.tie_rule}.`;
  const names = Object.keys(D.sweeps);
  fill($("sweep"), names, names[0]);
  $("sweep").addEventListener("change", () => showSweep($("sweep").value));
  for (const k of KEYS) $(k).addEventListener("change", () => onGroupChange(k));
  showSweep(names[0]);
  window.explorerTiming = {data_parse_start_ms: T0, init_start_ms: t0, ready_ms: performance.now()};
  window.explorerReady = true;
}
init();
</script>
</body></html>
"""
