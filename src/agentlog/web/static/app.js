// agentlog page: chat, a live timeline of the conversation's events, past conversations, dead letters.
// Plain JS, no build step. The conversation id is made here (128 random bits: unguessable) and kept
// in localStorage: it is the Kafka key of everything the conversation produces. The user is the
// gateway's HttpOnly session cookie, issued on the first visit; the page never sees or sends it.
"use strict";

const EVENT_TYPES = ["UserQueryReceived", "PlanGenerated", "ToolInvocationRequested", "ToolInvocationResulted",
  "StepTimerFired", "PlanStepCompleted", "PlanCompleted", "PlanFailed", "FinalAnswerSynthesized",
  "UserHistoryReset", "DeadLetterRedriven", "ApprovalRequested", "ApprovalDecided", "TurnCancelled"];
const CATEGORY = {
  UserQueryReceived: "question", PlanGenerated: "plan", PlanCompleted: "plan", ToolInvocationRequested: "tool",
  ToolInvocationResulted: "tool", PlanStepCompleted: "step", StepTimerFired: "step",
  FinalAnswerSynthesized: "answer", PlanFailed: "fail", ApprovalRequested: "approval", ApprovalDecided: "approval",
  TurnCancelled: "fail",
};

function randomId(prefix) {
  const bytes = crypto.getRandomValues(new Uint8Array(16)); // works outside secure contexts too
  return prefix + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function stored(key, make) {
  let value = localStorage.getItem(key);
  if (!value) { value = make(); localStorage.setItem(key, value); }
  return value;
}

const state = {
  conversationId: stored("agentlog.conversationId", () => randomId("web-")),
  stream: null,
  events: new Map(),      // id -> envelope, this conversation's events, in arrival order
  turnStart: new Map(),   // turnId -> ms of its first event (latencies are measured from it)
  answered: new Set(),    // turnIds whose answer is on screen
  finals: new Map(),      // turnId -> FinalAnswerSynthesized payload seen on the stream
  pendingTurns: new Set(),// turnIds answered 202: their answer comes from the stream
  pending: 0,             // questions without an answer yet (the typing indicator shows while > 0)
};

function clock(timestamp) { return timestamp.slice(11, 23); }

function timeAgo(timestamp) {
  const seconds = Math.max(0, (Date.now() - Date.parse(timestamp)) / 1000);
  if (seconds < 60) return "just now";
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return new Date(timestamp).toLocaleDateString();
}

// ---- chat ---------------------------------------------------------------------------------------
function scrollDown(node) { node.scrollTop = node.scrollHeight; }

function addMessage(kind, text, meta) {
  $("welcome").hidden = true;
  const bubble = element("div", `message ${kind}`, text);
  if (meta) bubble.append(element("span", "meta", meta));
  $("messages").append(bubble);
  scrollDown($("messages"));
  return bubble;
}

function addNote(text) {
  $("welcome").hidden = true;
  $("messages").append(element("div", "note", text));
  scrollDown($("messages"));
}

function showAnswer(turnId, message, outcome) {
  if (state.answered.has(turnId)) return;
  state.answered.add(turnId);
  dropStreamed(turnId); // the recorded answer replaces the text streamed while it was written
  const bubble = addMessage("assistant", message, outcome === "failed" ? "the plan failed" : "");
  if (outcome === "failed") bubble.classList.add("failed");
}

function setTyping(note) {
  $("typing").hidden = state.pending === 0;
  $("typing-note").textContent = note || "";
}

function settle() {
  state.pending -= 1;
  setTyping("");
  refreshConversations();
}

async function ask(prompt) {
  addMessage("user", prompt);
  state.pending += 1;
  setTyping("");
  $("send").disabled = true;
  const asked = state.conversationId;
  let result;
  try {
    result = await api("POST", "/api/chat", { prompt, conversationId: asked });
  } catch (error) {
    result = { status: 0, data: { error: `could not reach the gateway: ${error.message}` } };
  }
  $("send").disabled = false;
  if (asked !== state.conversationId) return; // the user moved on; the answer stays in its conversation
  const { status, data } = result;
  if (status === 202) {
    // Still running: its FinalAnswerSynthesized comes on the stream (unless it just did).
    const final = state.finals.get(data.turnId);
    if (!final) {
      state.pendingTurns.add(data.turnId);
      setTyping("still working: the answer will appear when it lands in the log");
      return;
    }
    showAnswer(data.turnId, final.message, final.outcome);
  } else if (status === 200) {
    showAnswer(data.turnId, data.message, data.outcome);
  } else {
    addMessage("error", (data && data.error) || `the gateway answered ${status}`);
  }
  settle();
}

// ---- timeline -----------------------------------------------------------------------------------
function highlight(json) {
  const escaped = json.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  return escaped.replace(/("(?:\\.|[^"\\])*")(\s*:)?|\b(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)\b|\b(true|false|null)\b/g,
    (match, string, colon, number, literal) => {
      if (string) return colon ? `<span class="j-key">${string}</span>${colon}` : `<span class="j-str">${string}</span>`;
      if (number) return `<span class="j-num">${number}</span>`;
      return `<span class="j-lit">${literal}</span>`;
    });
}

function summary(event) {
  const p = event.payload || {};
  if (p.userInput) return p.userInput;
  if (p.plan) return `${p.plan.steps.length} step(s) by ${p.planner || "planner"}`;
  const step = p.tool ? `${p.tool} ${p.stepId || ""}`.trim() : "";
  if (p.output && p.output.text) return step ? `${step} → ${p.output.text}` : p.output.text;
  if (p.error && p.error.message) return step ? `${step} failed: ${p.error.message}` : p.error.message;
  if (p.tool) return `${p.tool} ${p.stepId || ""}${p.attempt ? " #" + p.attempt : ""}`;
  if (p.decision) return `${p.stepId} ${p.decision} by ${p.decidedBy}`;
  if (p.message) return p.message;
  if (p.reason) return p.reason;
  return "";
}

function renderEvent(event) {
  if (state.events.has(event.id)) return;
  state.events.set(event.id, event);
  trackTurn(event);
  const list = $("timeline");
  const at = Date.parse(event.timestamp);
  if (!state.turnStart.has(event.turnId)) {
    state.turnStart.set(event.turnId, at);
    const label = event.type === "UserHistoryReset" ? "history reset" : `turn ${event.turnId.slice(0, 8)}`;
    list.append(element("li", "turn-head", `${label} · ${new Date(at).toLocaleTimeString()}`));
  }
  const item = element("li", `event cat-${CATEGORY[event.type] || "other"}`);
  item.dataset.type = event.type;
  const row = element("div", "row");
  row.append(element("span", "type", event.type),
    element("span", "latency", `+${at - state.turnStart.get(event.turnId)} ms`));
  const sub = element("div", "sub");
  sub.append(element("span", "source", event.source), element("span", "mono", clock(event.timestamp)));
  item.append(row, sub);
  const detail = summary(event);
  if (detail) item.append(element("div", "detail", detail));
  item.addEventListener("click", (click) => {
    if (click.target.closest("pre")) return; // let people select text inside the JSON
    const open = item.querySelector("pre");
    if (open) { open.remove(); item.classList.remove("open"); return; }
    const pre = element("pre", "json");
    pre.innerHTML = highlight(JSON.stringify(event, null, 2));
    item.append(pre);
    item.classList.add("open");
  });
  list.append(item);
  $("timeline-empty").hidden = true;
  $("event-count").textContent = `${state.events.size} event${state.events.size === 1 ? "" : "s"}`;
  scrollDown(list);
}

function onStreamEvent(event) {
  const isNew = !state.events.has(event.id);
  renderEvent(event);
  if (!isNew) return;
  if (event.type === "FinalAnswerSynthesized") {
    state.finals.set(event.turnId, event.payload);
    if (state.pendingTurns.delete(event.turnId)) {
      showAnswer(event.turnId, event.payload.message, event.payload.outcome);
      settle();
    }
  } else if (event.type === "UserHistoryReset") {
    addNote("history reset: earlier turns are forgotten");
  }
}

function openStream(conversationId) {
  if (state.stream) state.stream.close();
  const source = new EventSource(`/api/conversations/${encodeURIComponent(conversationId)}/stream`);
  const handle = (message) => onStreamEvent(JSON.parse(message.data));
  for (const type of EVENT_TYPES) source.addEventListener(type, handle);
  source.onmessage = handle;
  state.stream = source;
  return new Promise((resolve) => { source.onopen = resolve; source.onerror = resolve; });
}

// ---- conversations ------------------------------------------------------------------------------
async function loadConversation(conversationId) {
  state.conversationId = conversationId;
  localStorage.setItem("agentlog.conversationId", conversationId);
  state.events.clear(); state.turnStart.clear(); state.answered.clear(); state.pendingTurns.clear(); state.finals.clear();
  state.pending = 0;
  resetTurns();
  setTyping("");
  $("conversation-id").textContent = conversationId;
  $("timeline").replaceChildren();
  $("timeline-empty").hidden = false;
  $("event-count").textContent = "0 events";
  $("messages").replaceChildren($("welcome"));
  $("welcome").hidden = false;
  // first the streams, then the past: nothing falls in between
  await Promise.all([openStream(conversationId), openAnswerStream(conversationId)]);
  const [events, history] = await Promise.all([
    api("GET", `/api/conversations/${encodeURIComponent(conversationId)}/events`),
    api("GET", `/api/conversations/${encodeURIComponent(conversationId)}/history`),
  ]);
  if (history.status === 200) {
    for (const turn of history.data.turns) {
      addMessage("user", turn.question);
      if (turn.answer) showAnswer(turn.turnId, turn.answer, turn.outcome);
    }
  }
  if (events.status === 200) events.data.events.forEach(renderEvent);
  markCurrent();
}

function markCurrent() {
  for (const item of $("conversations").children) {
    item.classList.toggle("current", item.dataset.id === state.conversationId);
  }
}

async function refreshConversations() {
  const { status, data } = await api("GET", "/api/conversations");
  if (status !== 200) return;
  const list = $("conversations");
  list.replaceChildren(...data.conversations.map((c) => {
    const item = element("li");
    item.dataset.id = c.conversationId;
    item.title = c.conversationId;
    item.append(element("span", "title", c.firstQuestion || c.conversationId),
      element("span", "meta", `${c.turns} turn${c.turns === 1 ? "" : "s"} · ${timeAgo(c.lastActivity)}`));
    item.addEventListener("click", () => loadConversation(c.conversationId));
    return item;
  }));
  $("conversations-empty").hidden = data.conversations.length > 0;
  markCurrent();
}

async function resetHistory() {
  const { status, data } = await api("POST",
    `/api/conversations/${encodeURIComponent(state.conversationId)}/reset`);
  if (status === 202) toast("Reset requested: it is recorded as UserHistoryReset");
  else if (status === 404) toast("Nothing to reset: this conversation has no events yet");
  else toast((data && data.error) || `reset failed (${status})`);
}

// ---- dead letters, metrics, health --------------------------------------------------------------
async function loadDeadLetters() {
  const { status, data } = await api("GET", "/api/dead-letters");
  const list = $("dead-letters");
  // 403: not an admin; 401: no session (anonymous sessions off, or the signed-in key was revoked)
  if (status === 401 || status === 403) { list.replaceChildren(element("li", "empty", data.error), signInForm()); return; }
  if (status !== 200) { list.replaceChildren(element("li", "empty", (data && data.error) || "unavailable")); return; }
  $("dlq-count").textContent = `${data.total} in total`;
  if (!data.deadLetters.length) { list.replaceChildren(element("li", "empty", "The dead-letter queue is empty.")); return; }
  list.replaceChildren(...data.deadLetters.map((letter) => {
    const item = element("li", "letter");
    const row = element("div", "row");
    row.append(element("span", "mono muted", `#${letter.offset}`), element("span", "reason", letter.reason));
    const where = element("div", "where",
      `${letter.service} · ${letter.sourceTopic}[${letter.sourcePartition}]@${letter.sourceOffset}` +
      ` · ${letter.messageType || "unknown type"} · ${new Date(letter.failedAt).toLocaleString()}`);
    const original = element("pre", "", letter.original);
    original.hidden = true;
    item.append(row, where, original);
    item.addEventListener("click", () => { original.hidden = !original.hidden; });
    return item;
  }));
}

// An admin key, exchanged once for a session cookie (POST /api/session): the page does not keep it.
function signInForm() {
  const form = element("form", "sign-in");
  const key = element("input");
  Object.assign(key, { id: "admin-key", type: "password", placeholder: "admin API key", autocomplete: "off" });
  form.append(key, element("button", "button subtle", "Sign in"));
  form.addEventListener("submit", async (submit) => {
    submit.preventDefault();
    const response = await fetch("/api/session", { method: "POST", headers: { authorization: `Bearer ${key.value.trim()}` } });
    toast(response.ok ? "Signed in with the admin key" : "That key is not valid");
    if (response.ok) { loadDeadLetters(); refreshConversations(); } // the metrics poll picks it up
  });
  const item = element("li");
  item.append(form);
  return item;
}

function flatten(value, prefix, rows) {
  for (const [key, inner] of Object.entries(value)) {
    const name = prefix ? `${prefix}.${key}` : key;
    if (inner !== null && typeof inner === "object" && !Array.isArray(inner)) flatten(inner, name, rows);
    else if (typeof inner === "number" || typeof inner === "string") rows.push([name, inner]);
  }
  return rows;
}

async function refreshMetrics() {
  // Poll whatever the answer: the metrics service may start (or stop) after the page loaded.
  setTimeout(refreshMetrics, 5000);
  let result;
  try { result = await api("GET", "/api/metrics"); } catch { return; }
  // 404: the metrics service is not running; 401, 403: metrics are for admins
  if (result.status === 404 || result.status === 403 || result.status === 401) { $("metrics").hidden = true; return; }
  if (result.status !== 200 || !result.data) return;
  const rows = flatten(result.data, "", []).slice(0, 12);
  $("metrics-list").replaceChildren(...rows.flatMap(([name, value]) => [
    element("dt", "", name),
    element("dd", "", typeof value === "number" ? Number(value.toFixed(2)).toLocaleString() : value),
  ]));
  $("metrics").hidden = rows.length === 0;
}

async function refreshHealth() {
  const dot = $("health");
  try {
    const { status, data } = await api("GET", "/api/health");
    dot.className = `health ${status === 200 ? "ok" : "bad"}`;
    dot.title = status === 200 ? "broker reachable, topics present" : (data && (data.error || data.status)) || "unhealthy";
  } catch {
    dot.className = "health bad";
    dot.title = "the gateway does not answer";
  }
}

// ---- wiring -------------------------------------------------------------------------------------
function showView(tab) {
  for (const other of document.querySelectorAll(".tab[data-view]")) {
    const active = other === tab;
    other.classList.toggle("active", active);
    other.setAttribute("aria-selected", String(active));
    $(other.dataset.view).hidden = !active;
  }
  if (tab.id === "tab-dlq") loadDeadLetters();
}

function init() {
  const prompt = $("prompt");
  $("composer").addEventListener("submit", (submit) => {
    submit.preventDefault();
    const text = prompt.value.trim();
    if (!text) return;
    prompt.value = "";
    prompt.style.height = "";
    ask(text);
  });
  prompt.addEventListener("keydown", (key) => {
    if (key.key === "Enter" && !key.shiftKey) { key.preventDefault(); $("composer").requestSubmit(); }
  });
  prompt.addEventListener("input", () => { prompt.style.height = ""; prompt.style.height = `${prompt.scrollHeight}px`; });
  for (const suggestion of document.querySelectorAll(".suggestion")) {
    suggestion.addEventListener("click", () => ask(suggestion.textContent));
  }
  for (const tab of document.querySelectorAll(".tab[data-view]")) tab.addEventListener("click", () => showView(tab));
  $("new-conversation").addEventListener("click", () => { loadConversation(randomId("web-")); prompt.focus(); });
  $("reset-history").addEventListener("click", resetHistory);
  $("dlq-refresh").addEventListener("click", loadDeadLetters);
  initTurns();
  loadConversation(state.conversationId);
  refreshConversations();
  refreshMetrics();
  refreshHealth();
  setInterval(refreshConversations, 15000);
  setInterval(refreshHealth, 15000);
}

init();
