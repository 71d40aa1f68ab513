// agentlog page, running turns: the answer as it is written (AnswerDelta on /answer-stream), the
// approval card of a tool that needs a person's yes (ApprovalRequested -> Approve / Deny), and Cancel
// while a turn runs. Loaded before app.js, whose state, addMessage and api it uses once the page runs.
// Deltas are best-effort: the recorded FinalAnswerSynthesized always replaces the streamed text.
"use strict";

const turns = {
  answerStream: null,
  streamed: new Map(),  // turnId -> {bubble, next}: the text shown while the answer is written
  running: [],          // turnIds asked and not answered yet, oldest first (Cancel acts on the newest)
  cards: new Map(),     // `${turnId}/${stepId}` -> approval card
};

function resetTurns() {
  turns.streamed.clear(); turns.running = []; turns.cards.clear();
  showCancel();
}

function openAnswerStream(conversationId) {
  if (turns.answerStream) turns.answerStream.close();
  const source = new EventSource(`/api/conversations/${encodeURIComponent(conversationId)}/answer-stream`);
  source.addEventListener("AnswerDelta", (message) => onDelta(JSON.parse(message.data)));
  turns.answerStream = source;
  return new Promise((resolve) => { source.onopen = resolve; source.onerror = resolve; });
}

// seq 0 starts (or restarts) the text, each next seq appends; anything else is a lost piece: wait
// for the next restart or the final answer rather than show a gap.
function onDelta(delta) {
  if (state.answered.has(delta.turnId)) return;
  let shown = turns.streamed.get(delta.turnId);
  if (delta.seq === 0) {
    if (!shown) {
      shown = { bubble: addMessage("streaming", ""), next: 0 };
      shown.bubble.dataset.turn = delta.turnId;
      turns.streamed.set(delta.turnId, shown);
    }
    shown.bubble.textContent = "";
    shown.next = 0;
  }
  if (!shown || delta.seq !== shown.next) return;
  shown.bubble.textContent += delta.text;
  shown.next += 1;
  shown.bubble.classList.toggle("done", delta.done);
  scrollDown($("messages"));
}

function dropStreamed(turnId) {
  const shown = turns.streamed.get(turnId);
  if (shown) shown.bubble.remove();
  turns.streamed.delete(turnId);
}

// Every event of the conversation, live or read back, passes here once (from renderEvent).
function trackTurn(event) {
  const p = event.payload || {};
  if (event.type === "UserQueryReceived" && !turns.running.includes(event.turnId)) turns.running.push(event.turnId);
  else if (event.type === "FinalAnswerSynthesized") {
    turns.running = turns.running.filter((id) => id !== event.turnId);
    dropStreamed(event.turnId);
  } else if (event.type === "ApprovalRequested") addApprovalCard(event.turnId, p);
  else if (event.type === "ApprovalDecided") decideCard(event.turnId, p);
  else if (event.type === "TurnCancelled") addNote(`turn cancelled${p.reason ? `: ${p.reason}` : ""}`);
  showCancel();
}

function showCancel() {
  $("cancel-turn").hidden = turns.running.length === 0;
}

async function control(turnId, command, stepId) {
  const path = `/api/conversations/${encodeURIComponent(state.conversationId)}/turns/${encodeURIComponent(turnId)}/control`;
  const { status, data } = await api("POST", path, stepId ? { command, stepId } : { command });
  if (status !== 202) toast((data && data.error) || `${command} failed (${status})`);
  return status === 202;
}

function addApprovalCard(turnId, request) {
  const key = `${turnId}/${request.stepId}`;
  if (turns.cards.has(key)) return;
  const card = element("div", "approval-card");
  Object.assign(card.dataset, { turn: turnId, step: request.stepId });
  const args = Object.entries(request.arguments || {}).map(([name, value]) => `${name}: ${JSON.stringify(value)}`);
  const expires = new Date(request.expiresAt).toLocaleTimeString();
  card.append(element("strong", "", `Approve ${request.tool}?`), element("pre", "arguments", args.join("\n")),
    element("span", "meta", `${request.reason ? request.reason + " · " : ""}answer before ${expires}`));
  const buttons = element("div", "buttons");
  const approve = element("button", "button primary approve", "Approve");
  const deny = element("button", "button subtle deny", "Deny");
  for (const [button, command] of [[approve, "approve"], [deny, "deny"]]) {
    button.type = "button";
    button.addEventListener("click", async () => {
      approve.disabled = deny.disabled = true;
      if (!(await control(turnId, command, request.stepId))) approve.disabled = deny.disabled = false;
    });
  }
  buttons.append(approve, deny);
  card.append(buttons);
  turns.cards.set(key, card);
  $("welcome").hidden = true;
  $("messages").append(card);
  scrollDown($("messages"));
}

function decideCard(turnId, decision) {
  const card = turns.cards.get(`${turnId}/${decision.stepId}`);
  if (!card) return;
  card.classList.add("decided", decision.decision);
  card.dataset.decision = decision.decision;
  const by = decision.decision === "expired" ? "no answer in time" : `by ${decision.decidedBy}`;
  card.querySelector(".buttons").replaceWith(element("span", "decision", `${decision.decision} (${by})`));
}

function initTurns() {
  $("cancel-turn").addEventListener("click", async () => {
    const turnId = turns.running[turns.running.length - 1];
    if (turnId && (await control(turnId, "cancel"))) toast("Cancel requested: the turn ends with TurnCancelled");
  });
}
