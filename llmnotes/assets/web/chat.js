// The llmnotes chat page: plain JavaScript, no build step, no third-party code.
//
// It keeps the conversation in `messages`, sends all of it to POST /v1/chat/completions with
// stream: true, and reads the reply as server-sent events (SSE) from the fetch() body:
// events are separated by a blank line, each carries `data: <json>`, and `data: [DONE]` ends
// the stream. The Stop button aborts the fetch (AbortController); the server notices the closed
// connection and stops generating.
"use strict";

const $ = (id) => document.getElementById(id);
const log = $("log"), input = $("input"), sendBtn = $("send"), stopBtn = $("stop");
const messages = [];          // [{role, content}], the conversation so far
let modelName = null;         // from GET /v1/models
let controller = null;        // AbortController of the request in flight

$("api-key").value = sessionStorage.getItem("llmnotes-api-key") || "";

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

function setStatus(text) { $("status").textContent = text; }

function bubble(role, text) {
  const div = document.createElement("div");
  div.className = "msg " + role;
  div.textContent = text;
  log.appendChild(div);
  log.scrollTop = log.scrollHeight;
  return div;
}

// Read an error response ({"error": {"message": ...}}) into one readable line.
async function errorText(response) {
  try {
    const body = await response.json();
    return `${response.status}: ${body.error.message}`;
  } catch (e) {
    return `${response.status} ${response.statusText}`;
  }
}

async function loadModel() {
  try {
    const r = await fetch("/v1/models", { headers: headers() });
    if (!r.ok) { $("model").textContent = r.status === 401 ? "API key needed" : "unavailable"; return; }
    const body = await r.json();
    modelName = body.data[0].id;
    $("model").textContent = modelName;
  } catch (e) {
    $("model").textContent = "server unreachable";
  }
}

// Yield the JSON payloads of the SSE stream in `response.body` as they arrive.
async function* sseEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();   // stream: true keeps a UTF-8 character split across reads
  let buffer = "";
  while (true) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data:")) continue;   // comments and other fields are ignored
        const data = line.slice(5).trim();
        if (data === "[DONE]") return;
        yield JSON.parse(data);
      }
    }
  }
}

async function send(text) {
  if (!modelName) await loadModel();
  if (!modelName) { bubble("error", "No model: check the API key and the server."); return; }
  messages.push({ role: "user", content: text });
  bubble("user", text);
  const out = bubble("assistant streaming", "");
  const system = $("system").value.trim();
  const body = {
    model: modelName,
    messages: system ? [{ role: "system", content: system }, ...messages] : messages,
    stream: true,
    stream_options: { include_usage: true },
    temperature: parseFloat($("temperature").value),
    top_p: parseFloat($("top-p").value),
    max_tokens: parseInt($("max-tokens").value, 10),
  };
  controller = new AbortController();
  sendBtn.disabled = true; stopBtn.disabled = false;
  const started = performance.now();
  let firstToken = null, reply = "", usage = null, finish = null;
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST", headers: headers(), body: JSON.stringify(body), signal: controller.signal,
    });
    if (!response.ok) throw new Error(await errorText(response));
    for await (const event of sseEvents(response)) {
      if (event.error) throw new Error(event.error.message);
      if (event.usage) usage = event.usage;
      const choice = event.choices && event.choices[0];
      if (!choice) continue;
      if (choice.delta && choice.delta.content) {
        if (firstToken === null) firstToken = performance.now() - started;
        reply += choice.delta.content;
        out.textContent = reply;
        log.scrollTop = log.scrollHeight;
      }
      if (choice.finish_reason) finish = choice.finish_reason;
    }
  } catch (e) {
    if (e.name === "AbortError") finish = "stopped";
    else bubble("error", String(e.message || e));
  } finally {
    controller = null;
    sendBtn.disabled = false; stopBtn.disabled = true;
    out.classList.remove("streaming");
    if (reply) messages.push({ role: "assistant", content: reply });
    const meta = document.createElement("span");
    meta.className = "meta";
    const parts = [];
    if (finish) parts.push(finish);
    if (firstToken !== null) parts.push(`first token ${firstToken.toFixed(0)} ms`);
    if (usage) parts.push(`${usage.prompt_tokens} + ${usage.completion_tokens} tokens`);
    meta.textContent = parts.join(" · ");
    out.appendChild(meta);
    setStatus("");
  }
}

$("composer").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = input.value.trim();
  if (!text || controller) return;
  input.value = "";
  send(text);
});
input.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("composer").requestSubmit(); }
});
stopBtn.addEventListener("click", () => { if (controller) controller.abort(); });
$("clear").addEventListener("click", () => { messages.length = 0; log.replaceChildren(); });
$("api-key").addEventListener("change", () => {
  sessionStorage.setItem("llmnotes-api-key", $("api-key").value.trim());
  modelName = null;
  loadModel();
});
for (const [id, out] of [["temperature", "temperature-value"], ["top-p", "top-p-value"]]) {
  $(id).addEventListener("input", () => { $(out).textContent = $(id).value; });
}
loadModel();
