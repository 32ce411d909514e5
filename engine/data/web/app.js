// Repository lookup page: sends the query to the service, lists the hits and draws mirror plots (inline SVG).
"use strict";

const $ = (id) => document.getElementById(id);
const N_PLOTS = 6;

function kind() {
  return document.querySelector("input[name=kind]:checked").value;
}

function showInputs() {
  const k = kind();
  $("spectrum-input").hidden = k !== "spectrum";
  $("usi-input").hidden = k !== "usi";
  $("smiles-input").hidden = k !== "smiles";
}

// Peaks from "m/z intensity" lines (spaces, tabs or commas); MGF header lines are skipped.
function parsePeaks(text) {
  const peaks = [];
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line || /^[A-Za-z#]/.test(line)) continue;
    const parts = line.split(/[\s,;]+/).map(Number);
    if (parts.length >= 2 && parts.slice(0, 2).every(Number.isFinite)) peaks.push([parts[0], parts[1]]);
  }
  return peaks;
}

function mgfValue(text, key) {
  const m = text.match(new RegExp("^" + key + "=([^\\r\\n]*)", "mi"));
  return m ? m[1].trim() : null;
}

function settingsParams() {
  const p = new URLSearchParams();
  p.set("mode", $("mode").value);
  p.set("top_k", $("top-k").value || "10");
  return p;
}

async function request(url, options) {
  const response = await fetch(url, options);
  let body = null;
  try { body = await response.json(); } catch (e) { body = { error: "response is not JSON" }; }
  if (!response.ok) throw new Error((body && body.error) || ("HTTP " + response.status));
  return body;
}

async function runQuery(event) {
  event.preventDefault();
  $("error").textContent = "";
  $("status").textContent = "searching ...";
  const k = kind();
  let result;
  let query = null;  // {peaks, precursor_mz} for the plots
  try {
    if (k === "spectrum") {
      const text = $("peaks").value;
      const peaks = parsePeaks(text);
      if (/BEGIN IONS/i.test(text)) {
        const p = settingsParams();
        p.set("cross_mode", $("cross-mode").checked ? "true" : "false");
        result = await request("/lookup?" + p, { method: "POST", headers: { "Content-Type": "text/plain" }, body: text });
        query = { peaks: peaks, precursor_mz: parseFloat(mgfValue(text, "PEPMASS")) };
      } else {
        const body = {
          peaks: peaks, precursor_mz: parseFloat($("precursor").value), ion_mode: $("ion-mode").value,
          mode: $("mode").value, top_k: parseInt($("top-k").value || "10", 10), cross_mode: $("cross-mode").checked,
        };
        if (!peaks.length) throw new Error("paste at least one peak (m/z intensity per line)");
        if (!Number.isFinite(body.precursor_mz)) throw new Error("give the precursor m/z");
        result = await request("/lookup", { method: "POST", headers: { "Content-Type": "application/json" },
                                            body: JSON.stringify(body) });
        query = { peaks: peaks, precursor_mz: body.precursor_mz };
      }
    } else if (k === "usi") {
      const usi = $("usi").value.trim();
      const p = settingsParams();
      p.set("usi", usi);
      p.set("cross_mode", $("cross-mode").checked ? "true" : "false");
      result = await request("/lookup?" + p);
      query = await request("/spectrum/" + encodeURIComponent(usi));
    } else {
      const p = settingsParams();
      p.set("smiles", $("smiles").value.trim());
      for (const a of $("adducts").value.split(/\s+/).filter(Boolean)) p.append("adduct", a);
      result = await request("/structure?" + p);
    }
  } catch (err) {
    $("error").textContent = err.message;
    $("status").textContent = "";
    return;
  }
  $("status").textContent = result.hits.length + " hits in " + result.seconds + " s";
  render(result.hits, query);
}

function cell(row, text, numeric) {
  const td = document.createElement("td");
  td.textContent = text;
  if (numeric) td.className = "num";
  row.appendChild(td);
}

function fmt(x, digits) {
  return x === null || x === undefined ? "" : Number(x).toFixed(digits);
}

function render(hits, query) {
  $("results").hidden = false;
  $("summary").textContent = "(" + hits.length + ")";
  const body = document.querySelector("#hits tbody");
  body.innerHTML = "";
  for (const h of hits) {
    const tr = document.createElement("tr");
    cell(tr, h.rank, true); cell(tr, h.usi); cell(tr, h.dataset || "");
    cell(tr, fmt(h.precursor_mz, 4), true); cell(tr, h.ion_mode);
    cell(tr, fmt(h.predicted_tanimoto, 3), true); cell(tr, fmt(h.cosine, 3), true);
    cell(tr, fmt(h.mass_difference, 4), true);
    body.appendChild(tr);
  }
  const plots = $("plots");
  plots.innerHTML = "";
  hits.slice(0, N_PLOTS).forEach(async (h) => {
    const box = document.createElement("div");
    box.className = "plot";
    plots.appendChild(box);
    try {
      const hit = await request("/spectrum/" + encodeURIComponent(h.usi));
      box.appendChild(mirror(query ? query.peaks : [], hit.peaks));
      const title = document.createElement("div");
      title.className = "title";
      title.textContent = "#" + h.rank + " " + h.usi + "  (predicted Tanimoto " + fmt(h.predicted_tanimoto, 2) + ")";
      box.appendChild(title);
    } catch (err) {
      box.textContent = h.usi + ": " + err.message;
    }
  });
}

// A mirror plot: query peaks up, hit peaks down, each scaled to its base peak.
function mirror(top, bottom) {
  const W = 290, H = 170, PAD = 22, NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("class", "mirror");
  svg.setAttribute("width", W);
  svg.setAttribute("height", H);
  const all = top.concat(bottom).map((p) => p[0]);
  let lo = Math.min(...all), hi = Math.max(...all);
  if (!Number.isFinite(lo)) { lo = 0; hi = 1; }
  const span = Math.max(hi - lo, 1);
  lo -= span * 0.05; hi += span * 0.05;
  const x = (mz) => PAD + (mz - lo) / (hi - lo) * (W - 2 * PAD);
  const mid = H / 2, amp = H / 2 - PAD / 2;
  const line = (x1, y1, x2, y2, cls) => {
    const l = document.createElementNS(NS, "line");
    l.setAttribute("x1", x1); l.setAttribute("y1", y1); l.setAttribute("x2", x2); l.setAttribute("y2", y2);
    l.setAttribute("class", cls);
    svg.appendChild(l);
  };
  const draw = (peaks, sign, cls) => {
    const base = Math.max(...peaks.map((p) => p[1]), 1e-12);
    for (const [mz, inten] of peaks) line(x(mz), mid, x(mz), mid - sign * amp * inten / base, cls);
  };
  draw(top, 1, "q");
  draw(bottom, -1, "h");
  line(PAD, mid, W - PAD, mid, "axis");
  for (const v of [lo + span * 0.05, hi - span * 0.05]) {
    const t = document.createElementNS(NS, "text");
    t.setAttribute("x", x(v) - 12); t.setAttribute("y", H - 2);
    t.textContent = v.toFixed(0);
    svg.appendChild(t);
  }
  return svg;
}

document.querySelectorAll("input[name=kind]").forEach((r) => r.addEventListener("change", showInputs));
$("query").addEventListener("submit", runQuery);
showInputs();
