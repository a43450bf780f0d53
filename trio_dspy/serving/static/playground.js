// The playground: a form made from the chosen program's input schema, its
// streamed output fields growing as they arrive, then the typed prediction.
"use strict";

const $ = (id) => document.getElementById(id);
let programs = {};

function authHeaders() {
  const key = $("api-key").value;
  return key ? { Authorization: "Bearer " + key } : {};
}

function showError(text) {
  $("error").textContent = text;
}

async function loadPrograms() {
  showError("");
  const response = await fetch("programs", { headers: authHeaders() });
  if (!response.ok) {
    showError("GET /programs: HTTP " + response.status + (response.status === 401 ? " (enter the API key)" : ""));
    return;
  }
  programs = (await response.json()).programs;
  const select = $("program");
  select.textContent = "";
  for (const name of Object.keys(programs)) {
    const option = document.createElement("option");
    option.value = option.textContent = name;
    select.appendChild(option);
  }
  buildForm();
}

// One widget per input: a list for enums, a checkbox for booleans, a number
// box for numbers, a text area for strings, and JSON text for anything else.
function widgetFor(name, schema) {
  const kind = schema.type;
  let el;
  if (Array.isArray(schema.enum)) {
    el = document.createElement("select");
    for (const value of schema.enum) {
      const option = document.createElement("option");
      option.value = JSON.stringify(value);
      option.textContent = String(value);
      el.appendChild(option);
    }
    el.dataset.kind = "json";
  } else if (kind === "boolean") {
    el = document.createElement("input");
    el.type = "checkbox";
    el.dataset.kind = "boolean";
  } else if (kind === "integer" || kind === "number") {
    el = document.createElement("input");
    el.type = "number";
    if (kind === "number") el.step = "any";
    el.dataset.kind = "number";
  } else if (kind === "string") {
    el = document.createElement("textarea");
    el.dataset.kind = "string";
  } else {
    el = document.createElement("textarea");
    el.placeholder = "JSON";
    el.dataset.kind = "json";
  }
  el.name = name;
  el.id = "input-" + name;
  if ("default" in schema) {
    if (el.dataset.kind === "boolean") el.checked = Boolean(schema.default);
    else if (el.dataset.kind === "string") el.value = schema.default;
    else el.value = JSON.stringify(schema.default);
  }
  return el;
}

function buildForm() {
  const program = programs[$("program").value];
  const box = $("inputs");
  box.textContent = "";
  $("instructions").textContent = program ? program.instructions : "";
  if (!program) return;
  const schema = program.input_schema;
  for (const [name, field] of Object.entries(schema.properties)) {
    const label = document.createElement("label");
    label.htmlFor = "input-" + name;
    label.textContent = name + " ";
    if (field.description) {
      const desc = document.createElement("span");
      desc.className = "desc";
      desc.textContent = "(" + field.description + ")";
      label.appendChild(desc);
    }
    box.appendChild(label);
    box.appendChild(widgetFor(name, field));
  }
}

function readInputs() {
  const inputs = {};
  const required = programs[$("program").value].input_schema.required || [];
  for (const el of $("inputs").querySelectorAll("[name]")) {
    const kind = el.dataset.kind;
    if (kind === "boolean") inputs[el.name] = el.checked;
    else if (kind === "string") inputs[el.name] = el.value;
    else if (el.value === "" && !required.includes(el.name)) continue;
    else if (kind === "number") inputs[el.name] = Number(el.value);
    else {
      try {
        inputs[el.name] = JSON.parse(el.value);
      } catch (e) {
        throw new Error(el.name + ": not valid JSON");
      }
    }
  }
  return inputs;
}

function fieldBox(predictor, field) {
  const id = "field-" + predictor + "-" + field;
  let pre = document.getElementById(id);
  if (!pre) {
    const label = document.createElement("label");
    // The program's own predictor is "self"; a nested one is named by its path.
    label.textContent = predictor === "self" ? field : field + " (" + predictor + ")";
    pre = document.createElement("pre");
    pre.id = id;
    pre.className = "streamed";
    pre.dataset.field = field;
    $("fields").appendChild(label);
    $("fields").appendChild(pre);
  }
  return pre;
}

function handleEvent(event, data) {
  if (event === "chunk") {
    fieldBox(data.predictor, data.field).textContent += data.chunk;
  } else if (event === "status") {
    const li = document.createElement("li");
    li.textContent = data.message;
    $("status").appendChild(li);
  } else if (event === "prediction") {
    $("prediction").textContent = JSON.stringify(data.outputs, null, 2);
    $("usage").textContent = "tokens: " + data.usage.total_tokens + "  request id: " + data.request_id;
  } else if (event === "error") {
    showError("HTTP " + data.status + " " + data.error.type + ": " + data.error.message);
  }
}

async function run(submit) {
  submit.preventDefault();
  showError("");
  $("fields").textContent = "";
  $("status").textContent = "";
  $("prediction").textContent = "";
  $("usage").textContent = "";
  let inputs;
  try {
    inputs = readInputs();
  } catch (e) {
    showError(e.message);
    return;
  }
  $("run").disabled = true;
  try {
    const name = encodeURIComponent($("program").value);
    const response = await fetch("programs/" + name + "/stream", {
      method: "POST",
      headers: { "Content-Type": "application/json", ...authHeaders() },
      body: JSON.stringify(inputs),
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      const err = body.error || {};
      showError("HTTP " + response.status + " " + (err.type || "") + ": " + (err.message || "") +
        (err.field ? " (field " + err.field + ")" : ""));
      return;
    }
    // Server-sent events over a POST: EventSource can only GET, so read the
    // body stream and split it at blank lines.
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let event = "message";
        let data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event: ")) event = line.slice(7);
          else if (line.startsWith("data: ")) data += line.slice(6);
        }
        if (data) handleEvent(event, JSON.parse(data));
      }
    }
  } catch (e) {
    showError(String(e));
  } finally {
    $("run").disabled = false;
  }
}

$("program").addEventListener("change", buildForm);
$("api-key").addEventListener("change", loadPrograms);
$("form").addEventListener("submit", run);
loadPrograms();
