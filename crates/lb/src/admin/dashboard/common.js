"use strict";
// What the dashboard's pages share: formatting, table cells, messages, and
// calls to the API behind the lb with the client key the operator gave
// (asked for on the first 401 or 403, kept for this browser session only).
function fmt(v) { if (v == null || Number.isNaN(v)) return "–"; if (Number.isInteger(v)) return v.toLocaleString("en"); if (v >= 1000) return Math.round(v).toLocaleString("en"); if (v >= 10) return v.toFixed(0); return v.toFixed(v >= 1 ? 1 : 2); }
async function getJson(path) { const r = await fetch(path, { cache: "no-store" }); if (!r.ok) throw new Error(`${path}: ${r.status}`); return r.json(); }
// Task and worker panels go to the API nodes, which may want a client key
// (`--api-keys`): asked for on the first 401, kept for this session only.
function apiKey() { return sessionStorage.getItem("weir-api-key"); }
async function getApi(path) {
  const key = apiKey();
  const headers = key ? { "authorization": `Bearer ${key}` } : {};
  const r = await fetch(path, { cache: "no-store", headers });
  // A refusal of the key this request carried: a key saved meanwhile stays.
  if ((r.status === 401 || r.status === 403) && key === apiKey()) {
    sessionStorage.removeItem("weir-api-key");
    document.getElementById("key-form").style.display = "";
    say(`${path}: the API nodes want a key with the read scope`, true);
  }
  if (!r.ok) throw new Error(`${path}: ${r.status}`);
  return r.json();
}
function cell(row, text, cls) { const td = document.createElement("td"); td.textContent = text; if (cls) td.className = cls; row.append(td); return td; }
function age(at) {
  if (!at) return "–";
  const s = (Date.now() - Date.parse(at)) / 1000;
  return s <= 0 ? "due later" : s < 120 ? `${s.toFixed(1)} s` : `${(s / 60).toFixed(0)} min`;
}
function say(text, error) { const m = document.getElementById("message"); m.textContent = text; m.className = error ? "error" : "dim"; }
function setupKeyForm() {
  document.getElementById("save-key").onclick = () => {
    const v = document.getElementById("api-key").value.trim(); if (!v) return;
    sessionStorage.setItem("weir-api-key", v); document.getElementById("api-key").value = "";
    document.getElementById("key-form").style.display = "none"; say("API key kept for this session");
  };
}
// A change through the API (POST, PUT, DELETE) with the key, its JSON
// answer, or an Error carrying weir's message.
async function sendApi(method, path, body) {
  const key = apiKey();
  const headers = { "content-type": "application/json" };
  if (key) headers.authorization = `Bearer ${key}`;
  const r = await fetch(path, { method, headers, body: body ? JSON.stringify(body) : undefined });
  const answer = await r.json().catch(() => ({}));
  if (r.status === 401 || r.status === 403) document.getElementById("key-form").style.display = "";
  if (!r.ok) throw new Error((answer.error && answer.error.message) || `${path}: ${r.status}`);
  return answer;
}
