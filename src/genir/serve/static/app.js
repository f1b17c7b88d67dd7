// genir's page: plain JavaScript, no build step, nothing fetched but this server's own API.
"use strict";
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));

async function api(path, options) {
  const r = await fetch(path, options);
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

// a docid the way its scheme means it: words (GLEN), a code path with documents per prefix, or one atomic code
function docidHtml(d) {
  if (!d) return '<span class="docid muted">no docid</span>';
  const parts = d.path.map((p) => `${esc(p.word !== null && p.word !== undefined ? p.word : p.code)}<span class="count">(${p.documents})</span>`);
  return `<span class="docid" title="${esc(d.scheme)} docid; (n) = documents sharing the prefix">${parts.join(" &rsaquo; ")}</span>`;
}

function hitHtml(h) {
  const rel = h.relevance > 0;
  return `<li class="hit${rel ? " relevant" : ""}" data-doc="${esc(h.doc_id)}">
    <span class="title" data-doc="${esc(h.doc_id)}">${rel ? `<span class="star">&#9733;${h.relevance}</span> ` : ""}${esc(h.title || h.doc_id)}</span>
    <div class="meta">${esc(h.doc_id)} &middot; ${h.score.toFixed(3)}</div>
    ${h.docid ? docidHtml(h.docid) : ""}</li>`;
}

// the page's state lives in its URL (/?q=...&k=...&method=...): a search can be linked and shared, and the
// browser's back button returns to the previous one
let onlyMethod = "";

function stateUrl() {
  const p = new URLSearchParams({q: $("q").value.trim(), k: $("k").value});
  if (onlyMethod) p.set("method", onlyMethod);
  return `/?${p}`;
}

function fromUrl() {
  const p = new URLSearchParams(location.search);
  $("q").value = p.get("q") || "";
  const k = p.get("k");
  if (k && /^[0-9]+$/.test(k)) {
    if (![...$("k").options].some((o) => o.value === k)) $("k").add(new Option(k, k));
    $("k").value = k;
  }
  onlyMethod = p.get("method") || "";
  return Boolean($("q").value.trim());
}

async function search(ev, fromHistory) {
  if (ev) ev.preventDefault();
  const q = $("q").value.trim();
  if (!q) return;
  if (!fromHistory && location.pathname + location.search !== stateUrl()) history.pushState(null, "", stateUrl());
  $("status").textContent = "searching...";
  try {
    const t0 = performance.now();
    const only = onlyMethod ? `&method=${encodeURIComponent(onlyMethod)}` : "";
    const res = await api(`/search?q=${encodeURIComponent(q)}&k=${$("k").value}${only}`);
    const ms = Math.round(performance.now() - t0);
    $("status").textContent = `${Object.keys(res.results).length} methods in ${ms} ms` +
      (res.judged ? " \u00b7 a test query: judged documents are starred" : "");
    $("results").innerHTML = Object.entries(res.results).map(([name, hits]) => `
      <div class="column" data-method="${esc(name)}">
        <h3><span>${esc(name)}</span>${hits.length && hits[0].docid
          ? `<button class="small inspect" data-method="${esc(name)}">inspect beam</button>` : ""}</h3>
        <ol>${hits.map(hitHtml).join("") || '<li class="muted">no hits</li>'}</ol>
      </div>`).join("");
  } catch (e) {
    $("status").innerHTML = `<span class="error">${esc(e.message)}</span>`;
  }
}

async function inspect(method) {
  const q = $("q").value.trim();
  $("inspector").hidden = false;
  $("inspector-title").textContent = `Docid inspector: ${method}`;
  $("inspector-body").textContent = "decoding...";
  try {
    const r = await api(`/inspect?q=${encodeURIComponent(q)}&method=${encodeURIComponent(method)}&k=${$("k").value}`);
    const onPath = new Set(r.hits.filter((h) => h.docid).flatMap((h) => h.docid.map((_, t) => JSON.stringify(h.docid.slice(0, t + 1)))));
    const label = (b) => (b.words || b.prefix).map(esc).join(" &rsaquo; ");
    let html = `<p class="muted">beam ${r.beam}; highlighted prefixes lead to a returned document.</p>`;
    for (const s of r.steps) {
      html += `<h3>step ${s.step} (${s.beams} beams)</h3><table class="step"><tr><th>#</th><th>prefix</th><th>score</th><th>from beam</th><th>documents</th></tr>` +
        s.top.map((b, i) => `<tr class="${onPath.has(JSON.stringify(b.prefix)) ? "onpath" : ""}"><td>${i}</td><td class="docid">${label(b)}</td><td>${b.score.toFixed(3)}</td><td>${b.from}</td><td>${b.documents}</td></tr>`).join("") + "</table>";
    }
    html += `<h3>hits and the beam that found each</h3><table class="hits"><tr><th>doc</th><th>score</th><th>final beam</th><th>docid</th></tr>` +
      r.hits.map((h) => `<tr><td class="title" data-doc="${esc(h.doc_id)}">${esc(h.title || h.doc_id)}</td><td>${h.score.toFixed(3)}</td><td>${h.beam ?? "-"}</td><td class="docid">${(h.docid || []).map(esc).join(" &rsaquo; ")}</td></tr>`).join("") + "</table>";
    $("inspector-body").innerHTML = html;
    $("inspector").scrollIntoView({behavior: "smooth"});
  } catch (e) {
    $("inspector-body").innerHTML = `<span class="error">${esc(e.message)}</span>`;
  }
}

async function showDocument(id) {
  $("document").hidden = false;
  try {
    const d = await api(`/documents/${encodeURIComponent(id)}?examples=5`);
    $("document-title").textContent = d.title || d.doc_id;
    let html = `<p class="meta">${esc(d.doc_id)}</p><p>${esc(d.text)}</p>`;
    for (const [m, docid] of Object.entries(d.docids)) {
      if (!docid) { html += `<h3>${esc(m)}</h3><p class="muted">not indexed by this method</p>`; continue; }
      html += `<h3>${esc(m)}: ${docidHtml(docid)}</h3><table><tr><th>prefix</th><th>documents</th><th>sharing it (examples)</th></tr>` +
        docid.sharing.map((s) => `<tr><td class="docid">${s.prefix.map(esc).join(" &rsaquo; ")}</td><td>${s.documents}</td><td>${s.examples.map((e) => `<span class="title" data-doc="${esc(e.doc_id)}">${esc(e.title || e.doc_id)}</span>`).join("; ")}</td></tr>`).join("") + "</table>";
    }
    $("document-body").innerHTML = html;
    $("document").scrollIntoView({behavior: "smooth"});
  } catch (e) {
    $("document-body").innerHTML = `<span class="error">${esc(e.message)}</span>`;
  }
}

$("search-form").addEventListener("submit", (ev) => search(ev, false));
window.addEventListener("popstate", () => {
  if (fromUrl()) search(null, true);
  else { $("results").innerHTML = ""; $("status").textContent = ""; }
});
document.addEventListener("click", (ev) => {
  const t = ev.target.closest(".inspect, .title");
  if (!t) return;
  if (t.classList.contains("inspect")) inspect(t.dataset.method);
  else if (t.dataset.doc) showDocument(t.dataset.doc);
});
if (fromUrl()) search(null, true);  // a linked search runs when the page opens
else api("/health").then((h) => { $("status").textContent = `${h.documents} documents; methods: ${h.methods.join(", ")}`; })
  .catch((e) => { $("status").innerHTML = `<span class="error">${esc(e.message)}</span>`; });
