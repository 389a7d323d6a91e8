// The chat UI: streams answers from /v1/chat/completions, keeps the session in
// localStorage, shows each answer's pipeline, sends feedback to /v1/feedback, and asks a
// prompt again ("regenerate") so that the user can pick the better of two answers. The
// composer takes images (attach, paste, drop), sent as OpenAI image content parts.
"use strict";

const $ = (id) => document.getElementById(id);
const STORE = "gateway.session.v1";
const KEY_STORE = "gateway.apiKey";
const MAX_SENT_IMAGES = 8; // image parts one request may carry: the server refuses more

const state = loadSession();
let selected = null;
let busy = false;

function newSessionId() {
  const random = crypto.getRandomValues(new Uint32Array(2));
  return `web-${Date.now().toString(36)}-${random[0].toString(36)}${random[1].toString(36)}`;
}

function loadSession() {
  try {
    const saved = JSON.parse(localStorage.getItem(STORE) || "null");
    if (saved && saved.id && Array.isArray(saved.messages)) return saved;
  } catch (err) { /* a corrupt entry starts a new session */ }
  return { id: newSessionId(), messages: [], model: "auto" };
}

function saveSession() {
  try {
    localStorage.setItem(STORE, JSON.stringify(state));
  } catch (err) {
    // Over the storage quota (pictures are large): keep the conversation without the user's
    // images, which this page still holds and sends until it is reloaded.
    const messages = state.messages.map((m) => (m.images ? { ...m, images: m.images.map(({ name }) => ({ name })) } : m));
    try { localStorage.setItem(STORE, JSON.stringify({ ...state, messages })); } catch (again) { /* nothing kept */ }
    setStatus("The images are too large to keep in this browser: a reload drops them.");
  }
}

function headers(json = true) {
  const h = {};
  if (json) h["Content-Type"] = "application/json";
  const key = $("api-key").value.trim();
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

function setStatus(text) { $("status").textContent = text || ""; }

async function errorText(response) {
  try {
    const body = await response.json();
    if (body.error) return `${body.error.message} (${response.status})`;
  } catch (err) { /* not JSON */ }
  return `HTTP ${response.status}`;
}

function noteAuth(status) {
  $("key-field").classList.toggle("attention", status === 401 || status === 403);
}

// --- rendering ----------------------------------------------------------------------

function renderMessage(msg, index) {
  const div = document.createElement("div");
  div.className = `msg ${msg.role}${msg.error ? " error" : ""}`;
  div.dataset.index = index;
  if (msg.role === "user") {
    div.textContent = msg.content;
    if (msg.images && msg.images.length) div.appendChild(sentImages(msg.images));
    return div;
  }
  const body = document.createElement("div");
  body.className = "content";
  const sources = (msg.pipeline && msg.pipeline.sources) || [];
  body.innerHTML = Markdown.render(answerText(msg.content, sources) || (msg.pending ? "…" : ""));
  div.appendChild(body);
  if (sources.length && !msg.pending) div.appendChild(sourceList(sources, index, body));
  for (const img of (msg.pipeline && msg.pipeline.images) || []) {
    if (img.b64_json) {
      const tag = document.createElement("img");
      tag.src = `data:image/png;base64,${img.b64_json}`;
      tag.alt = img.description || "generated image";
      div.appendChild(tag);
    }
  }
  if (!msg.pending && !msg.error) div.appendChild(feedbackBar(msg));
  div.addEventListener("click", (event) => {
    if (event.target.closest(".feedback")) return;
    select(index);
  });
  if (selected === index) div.classList.add("selected");
  return div;
}

// The user's images in their bubble; a click shows one full size.
function sentImages(images) {
  const strip = document.createElement("div");
  strip.className = "sent-images";
  for (const image of images) {
    if (!image.url) {
      const gone = document.createElement("span");
      gone.className = "badge";
      gone.textContent = `${image.name} (not kept)`;
      strip.appendChild(gone);
      continue;
    }
    const thumb = document.createElement("img");
    thumb.src = image.url;
    thumb.alt = image.name;
    thumb.title = `${image.name}: click for full size`;
    thumb.addEventListener("click", () => {
      const full = $("viewer").querySelector("img");
      full.src = image.url;
      full.alt = image.name;
      $("viewer").showModal();
    });
    strip.appendChild(thumb);
  }
  return strip;
}

// The answer without the markdown list of sources the gateway appends: the list below shows them.
function answerText(content, sources) {
  if (!sources.length || !content) return content;
  const at = content.lastIndexOf("\n\n**Sources**\n");
  return at >= 0 ? content.slice(0, at) : content;
}

// The sources under an answer (title, collection, snippet); each [n] in the answer links to its own.
function sourceList(sources, index, body) {
  const list = document.createElement("ol");
  list.className = "answer-sources";
  for (const s of [...sources].sort((a, b) => a.number - b.number)) {
    const item = document.createElement("li");
    item.value = s.number;
    item.id = `source-${index}-${s.number}`;
    item.dataset.source = s.number;
    const title = s.title || (s.metadata && s.metadata.title) || s.doc_id;
    const snippet = (s.text || "").replace(/\s+/g, " ").slice(0, 160);
    item.innerHTML = `<strong>${Markdown.escape(title)}</strong>`
      + (s.collection ? ` <span class="badge">${Markdown.escape(s.collection)}</span>` : "")
      + ` <span class="muted">${Markdown.escape(snippet)}${(s.text || "").length > 160 ? "…" : ""}</span>`;
    list.appendChild(item);
  }
  for (const cite of body.querySelectorAll(".cite")) {
    const target = `source-${index}-${cite.dataset.cite}`;
    if (!sources.some((s) => String(s.number) === cite.dataset.cite)) continue;
    const link = document.createElement("a");
    link.className = "cite";
    link.href = `#${target}`;
    link.dataset.cite = cite.dataset.cite;
    link.textContent = cite.textContent;
    link.addEventListener("click", (event) => {
      event.preventDefault();
      const item = document.getElementById(target);
      item.scrollIntoView({ block: "nearest" });
      item.classList.add("flash");
      setTimeout(() => item.classList.remove("flash"), 1200);
    });
    cite.replaceWith(link);
  }
  return list;
}

function feedbackBar(msg) {
  const meta = document.createElement("div");
  meta.className = "meta";
  const intent = msg.pipeline && msg.pipeline.intent ? `${msg.pipeline.intent} · ` : "";
  meta.innerHTML = `<span>${Markdown.escape(intent + (msg.model || ""))}</span>`;
  const fb = document.createElement("span");
  fb.className = "feedback";
  const up = button("▲ Good", "Good answer", msg.rating === 1);
  const down = button("▼ Bad", "Bad answer", msg.rating === -1);
  const comment = document.createElement("input");
  comment.placeholder = "comment (optional)";
  comment.value = msg.comment || "";
  const can = Boolean(msg.message_id && msg.session_id);
  for (const el of [up, down, comment]) el.disabled = !can;
  if (!can) fb.title = "Feedback needs an answer stored in the session (model auto).";
  up.addEventListener("click", () => sendFeedback(msg, 1, comment.value));
  down.addEventListener("click", () => sendFeedback(msg, -1, comment.value));
  comment.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && msg.rating) sendFeedback(msg, msg.rating, comment.value);
  });
  fb.append(up, down, comment);
  const rival = msg.rival != null ? state.messages[msg.rival] : null;
  if (rival && rival.message_id && msg.message_id) {
    // Two answers to one prompt: the pick is a preference (a DPO pair in the export).
    const prefer = button(msg.preferred ? "★ Preferred" : "☆ Prefer this", "Prefer this answer", msg.preferred);
    prefer.classList.add("prefer");
    prefer.addEventListener("click", () => sendPreference(msg, rival));
    fb.appendChild(prefer);
  }
  if (can && isLastAnswer(msg)) {
    const again = button("↻ Regenerate", "Ask the same prompt again for another answer", false);
    again.classList.add("regenerate");
    again.disabled = busy;
    again.addEventListener("click", () => regenerate(msg));
    fb.appendChild(again);
  }
  meta.appendChild(fb);
  return meta;
}

function isLastAnswer(msg) {
  return state.messages[state.messages.length - 1] === msg;
}

function button(text, title, chosen) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = `ghost${chosen ? " chosen" : ""}`;
  b.textContent = text;
  b.title = title;
  b.setAttribute("aria-label", title);
  return b;
}

function renderAll() {
  const box = $("messages");
  box.replaceChildren(...state.messages.map(renderMessage));
  box.scrollTop = box.scrollHeight;
}

function updateMessage(index) {
  const box = $("messages");
  const old = box.querySelector(`[data-index="${index}"]`);
  const fresh = renderMessage(state.messages[index], index);
  if (old) old.replaceWith(fresh); else box.appendChild(fresh);
  box.scrollTop = box.scrollHeight;
}

function select(index) {
  selected = index;
  document.querySelectorAll(".msg.selected").forEach((el) => el.classList.remove("selected"));
  const el = document.querySelector(`.msg[data-index="${index}"]`);
  if (el) el.classList.add("selected");
  PipelinePanel.render($("pipeline"), state.messages[index] && state.messages[index].pipeline);
}

// --- feedback -----------------------------------------------------------------------

async function sendFeedback(msg, rating, comment) {
  const body = { session_id: msg.session_id, message_id: msg.message_id, rating };
  if (comment && comment.trim()) body.comment = comment.trim();
  const response = await fetch("/v1/feedback", { method: "POST", headers: headers(), body: JSON.stringify(body) });
  noteAuth(response.status);
  if (!response.ok) { setStatus(`Feedback not saved: ${await errorText(response)}`); return; }
  msg.rating = rating;
  msg.comment = body.comment || "";
  saveSession();
  renderAll();
  setStatus(rating === 1 ? "Thanks: rated good." : "Thanks: rated bad.");
}

// The picked answer (rating 1) is stored with the one it was picked over.
async function sendPreference(msg, rival) {
  const body = { session_id: msg.session_id, message_id: msg.message_id, rating: 1, preferred_over: rival.message_id };
  const response = await fetch("/v1/feedback", { method: "POST", headers: headers(), body: JSON.stringify(body) });
  noteAuth(response.status);
  if (!response.ok) { setStatus(`Preference not saved: ${await errorText(response)}`); return; }
  Object.assign(msg, { preferred: true, superseded: false, rating: 1 });
  Object.assign(rival, { preferred: false, superseded: true });
  saveSession();
  renderAll();
  setStatus("Thanks: preference saved.");
}

// --- chat ---------------------------------------------------------------------------

// What the model is sent: the turns before `end`; of two answers to one prompt, the preferred.
// Images go again with their turn, the newest MAX_SENT_IMAGES of them: older ones are left out.
function conversation(end = state.messages.length) {
  const turns = state.messages.slice(0, end)
    .filter((m) => !m.error && !m.pending && !m.superseded && (m.role === "user" || m.role === "assistant"));
  let room = MAX_SENT_IMAGES;
  return turns.reverse().map((m) => {
    const urls = imageUrls(m); // a user's image not kept over a reload has no url
    const sent = room > 0 ? urls.filter(Boolean).slice(-room) : [];
    room -= sent.length;
    return apiMessage(m.role, m.raw ?? m.content, sent, sent.length < urls.length);
  }).reverse();
}

// The images of a turn: the user's, or those an answer drew (creative intent), as data URLs.
function imageUrls(m) {
  if (m.role === "user") return (m.images || []).map((image) => image.url);
  return ((m.pipeline && m.pipeline.images) || [])
    .filter((image) => image.b64_json)
    .map((image) => `data:image/png;base64,${image.b64_json}`);
}

// A turn as OpenAI takes it: text alone as a string; with images, content parts, the text
// part first (none when there is no text), then the images.
function apiMessage(role, text, urls, omitted) {
  if (!urls.length) return { role, content: text || (omitted ? "[image not sent again]" : "") };
  const parts = urls.map((url) => ({ type: "image_url", image_url: { url } }));
  return { role, content: text ? [{ type: "text", text }, ...parts] : parts };
}

// Ask the prompt of `msg` again: the new answer comes next to it, and either can be picked.
function regenerate(msg) {
  if (busy) return;
  const index = state.messages.indexOf(msg);
  let prompt = index - 1;
  while (prompt >= 0 && state.messages[prompt].role !== "user") prompt -= 1;
  if (prompt < 0) return;
  msg.superseded = true;
  send(null, { rival: index, history: conversation(prompt + 1) });
}

async function* sseEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
      if (!data) continue;
      if (data === "[DONE]") return;
      yield JSON.parse(data);
    }
  }
}

// Send the user's turn `prompt` ({ role, content, images? }), or with `again` the same prompt anew.
async function send(prompt, again = null) {
  const model = $("model").value;
  state.model = model;
  if (!again) state.messages.push(prompt);
  const history = again ? again.history : conversation();
  const answer = { role: "assistant", content: "", pending: true, model, pipeline: null };
  state.messages.push(answer);
  const index = state.messages.length - 1;
  if (again) {
    answer.rival = again.rival;
    state.messages[again.rival].rival = index;
  }
  renderAll();
  const payload = { model, messages: history, stream: true, stream_options: { include_usage: true } };
  if (model === "auto") payload.session_id = state.id;
  else payload.return_experts = true;
  busy = true;
  $("send").disabled = true;
  setStatus("Thinking…");
  const started = performance.now();
  try {
    const response = await fetch("/v1/chat/completions", { method: "POST", headers: headers(), body: JSON.stringify(payload) });
    noteAuth(response.status);
    if (!response.ok) throw new Error(await errorText(response));
    const live = { steps: [] };
    for await (const chunk of sseEvents(response)) {
      if (chunk.error) throw new Error(chunk.error.message || "stream failed");
      const event = chunk.pipeline_event;
      if (event) {
        if (event.type === "route") Object.assign(live, event, { steps: live.steps });
        if (event.type === "step") live.steps.push(event.step);
        answer.pipeline = live;
        setStatus(event.type === "route" ? `Intent: ${event.intent}` : `Step ${event.step.name}: ${event.step.status}`);
      }
      const choice = chunk.choices && chunk.choices[0];
      if (choice && choice.delta && choice.delta.content) answer.content += choice.delta.content;
      if (chunk.pipeline) {
        answer.pipeline = chunk.pipeline;
        // Citations that name no source were already streamed: take them out now.
        for (const n of (chunk.pipeline.verification || {}).removed || []) {
          answer.content = answer.content.replace(new RegExp(`\\s?\\[${Number(n)}\\]`, "g"), "");
        }
        answer.message_id = chunk.message_id;
        answer.session_id = chunk.session_id || state.id;
      }
      if (chunk.experts && chunk.experts.length) {
        answer.pipeline = { ...(answer.pipeline || {}), model, experts: chunk.experts[0] };
      }
      updateMessage(index);
    }
    answer.pending = false;
    setStatus(`Answered in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  } catch (err) {
    answer.pending = false;
    answer.error = true;
    answer.content = `⚠ ${err.message}`;
    setStatus("");
  } finally {
    busy = false;
    $("send").disabled = false;
    if (again && answer.error) state.messages[again.rival].superseded = false;
    saveSession();
    // A second answer: its rival's bar shows the pick now too.
    if (again) renderAll(); else updateMessage(index);
    if (!answer.error) select(index);
  }
}

// --- health, models, key ------------------------------------------------------------

async function refreshHealth() {
  const strip = $("health");
  try {
    const response = await fetch("/readyz", { cache: "no-store" });
    const body = await response.json();
    strip.replaceChildren(...Object.entries(body.services || {}).map(([name, s]) => {
      const tag = document.createElement("span");
      tag.className = `svc ${s.status}`;
      tag.dataset.service = name;
      tag.textContent = name.replace(/_svc$/, "");
      tag.title = `${name}: ${s.status}${s.latency_ms != null ? ` (${s.latency_ms} ms)` : ""}${s.error ? ` ${s.error}` : ""}`;
      return tag;
    }));
    strip.dataset.status = body.status;
  } catch (err) {
    strip.textContent = "gateway unreachable";
    strip.dataset.status = "down";
  }
}

async function loadModels() {
  const response = await fetch("/v1/models", { headers: headers(false) });
  noteAuth(response.status);
  // The key field shows once the gateway asks for a key (or one is saved).
  if (response.status === 401 || response.status === 403) $("key-field").hidden = false;
  if (!response.ok) {
    setStatus(`The gateway needs a valid API key: ${await errorText(response)}`);
    return;
  }
  setStatus("");
  const body = await response.json();
  // The chat models only: the list also names the embedding and image models, by kind.
  const chat = body.data.filter((m) => !m.kind || m.kind === "chat" || m.id === "auto");
  const select = $("model");
  select.replaceChildren(...chat.map((m) => new Option(m.id, m.id)));
  select.value = chat.some((m) => m.id === state.model) ? state.model : "auto";
}

function init() {
  $("api-key").value = localStorage.getItem(KEY_STORE) || "";
  $("key-field").hidden = !$("api-key").value;
  $("api-key").addEventListener("change", () => {
    localStorage.setItem(KEY_STORE, $("api-key").value.trim());
    loadModels();
  });
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("prompt").value.trim();
    if ((!text && !attached.length) || busy) return;
    const prompt = { role: "user", content: text };
    if (attached.length) prompt.images = attached;
    attached = [];
    renderAttachments();
    attachNote("");
    $("prompt").value = "";
    send(prompt);
  });
  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  initAttachments();
  $("new-session").addEventListener("click", () => {
    state.id = newSessionId();
    state.messages = [];
    selected = null;
    saveSession();
    renderAll();
    PipelinePanel.render($("pipeline"), null);
  });
  renderAll();
  const last = state.messages.map((m, i) => [m, i]).filter(([m]) => m.role === "assistant" && m.pipeline).pop();
  if (last) select(last[1]);
  refreshHealth();
  setInterval(refreshHealth, 10000);
  loadModels();
}

init();
