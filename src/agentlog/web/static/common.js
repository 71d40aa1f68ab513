// Helpers shared by the agentlog pages (index.html with app.js, reviews.html with reviews.js),
// loaded before the page's own script. Plain JS, no build step.
"use strict";

const $ = (id) => document.getElementById(id);

// A JSON request: resolves to {status, data}, data null when the body is not JSON.
async function api(method, path, body) {
  const init = { method, headers: {} };
  if (body !== undefined) { init.headers["content-type"] = "application/json"; init.body = JSON.stringify(body); }
  const response = await fetch(path, init);
  let data = null;
  try { data = await response.json(); } catch { data = null; }
  return { status: response.status, data };
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// Shows `text` in the page's #toast box for a few seconds.
function toast(text) {
  const box = $("toast");
  box.textContent = text;
  box.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.hidden = true; }, 3500);
}
