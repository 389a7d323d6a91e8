// The pipeline panel: how one answer was made (intent scores, sources and
// citations, tool calls, reasoning trace, experts per layer, images, steps).
"use strict";

const PipelinePanel = (() => {
  const esc = (v) => Markdown.escape(String(v ?? ""));
  const pct = (x) => `${(100 * (Number(x) || 0)).toFixed(0)}%`;

  function scoresChart(pipeline) {
    const scores = Object.entries(pipeline.scores || {}).sort((a, b) => b[1] - a[1]);
    if (!scores.length) return "";
    const rows = scores.map(([name, score]) => `
      <div class="bar${name === pipeline.intent ? " top" : ""}" data-intent="${esc(name)}">
        <span>${esc(name)}</span>
        <span class="track"><span class="fill" style="width:${pct(score)}"></span></span>
        <span>${pct(score)}</span>
      </div>`).join("");
    const fallback = pipeline.fallback ? '<span class="badge warn">fallback plan</span>' : "";
    return `<h3>Intent</h3><p><strong id="intent">${esc(pipeline.intent)}</strong>
      <span class="muted">confidence ${pct(pipeline.confidence)}</span>${fallback}</p>
      <div class="bars">${rows}</div>`;
  }

  function sources(pipeline) {
    const list = pipeline.sources || [];
    if (!list.length) return "";
    const checks = {};
    for (const c of (pipeline.verification || {}).citations || []) checks[c.number] = c;
    const origins = {};
    for (const c of pipeline.citations || []) if (c.origin) origins[c.number] = c.origin;
    const items = list.map((s) => {
      const c = checks[s.number];
      let badge = '<span class="badge">not cited</span>';
      if (c) {
        const support = c.supported === false ? "bad" : c.supported ? "ok" : "";
        const scores = c.semantic != null ? ` sem ${Number(c.semantic).toFixed(2)} · lex ${Number(c.lexical).toFixed(2)}` : "";
        const origin = origins[s.number] && origins[s.number] !== "model" ? ` · ${origins[s.number]}` : "";
        badge = `<span class="badge ${support}">${c.supported === false ? "unsupported" : "cited"}${origin}${scores}</span>`;
      }
      const title = s.title || (s.metadata && s.metadata.title) || s.doc_id;
      const collection = s.collection ? `<span class="badge">${esc(s.collection)}</span>` : "";
      return `<li value="${esc(s.number)}"><strong>${esc(title)}</strong>${collection}${badge}
        <div class="muted">${esc((s.text || "").slice(0, 280))}</div></li>`;
    }).join("");
    const removed = ((pipeline.verification || {}).removed || []);
    const note = removed.length
      ? `<p class="badge bad">citations to no source removed: ${removed.map((n) => `[${esc(n)}]`).join(" ")}</p>` : "";
    const attribution = pipeline.attribution;
    const unsupported = attribution ? attribution.sentences.filter((x) => !x.supported) : [];
    const flagged = unsupported.length
      ? `<p class="badge warn">${unsupported.length} sentence(s) no source supports, ${esc(attribution.unsupported)}:</p>
         <ul class="unsupported">${unsupported.map((x) => `<li class="muted">${esc(x.sentence)}</li>`).join("")}</ul>` : "";
    return `<h3>Sources</h3>${note}${flagged}<ol class="sources">${items}</ol>`;
  }

  function toolCalls(pipeline) {
    const calls = pipeline.tool_calls || [];
    if (!calls.length) return "";
    const items = calls.map((t) => {
      const name = t.name || t.tool || (t.function && t.function.name) || "tool";
      const args = t.arguments || (t.function && t.function.arguments) || {};
      const output = t.output ?? t.result ?? t.error ?? "";
      return `<li><strong>${esc(name)}</strong>
        <pre>${esc(typeof args === "string" ? args : JSON.stringify(args, null, 1))}</pre>
        <pre>${esc(typeof output === "string" ? output : JSON.stringify(output, null, 1))}</pre></li>`;
    }).join("");
    return `<h3>Tool calls</h3><ul class="tools">${items}</ul>`;
  }

  function reasoning(pipeline) {
    const r = pipeline.reasoning;
    if (!r) return "";
    const trace = r.trace || [];
    const text = Array.isArray(trace)
      ? trace.map((s) => (typeof s === "string" ? s : JSON.stringify(s))).join("\n")
      : JSON.stringify(trace, null, 1);
    return `<h3>Reasoning</h3><p>strategy <strong>${esc(r.strategy || "?")}</strong></p><pre>${esc(text)}</pre>`;
  }

  // The server that wrote the answer when it is an external engine ("engine:<name>").
  function answeringEngine(pipeline) {
    const step = (pipeline.steps || []).find((s) => s.detail && s.detail.server);
    const server = step ? String(step.detail.server) : "";
    return server.startsWith("engine:") ? server : "";
  }

  function expertsGrid(pipeline) {
    const perLayer = pipeline.experts && (pipeline.experts.per_layer || pipeline.experts);
    const engine = answeringEngine(pipeline);
    if (!perLayer && engine) {
      return `<h3>Experts per layer</h3><p class="muted">Answered by ${esc(engine)}, an
        external engine: it reports no experts.</p>`;
    }
    if (!Array.isArray(perLayer) || !perLayer.length || !Array.isArray(perLayer[0])) return "";
    return `<h3>Experts per layer</h3><div class="heatmap"><canvas id="experts-heatmap"
      data-layers="${perLayer.length}" data-experts="${perLayer[0].length}"></canvas></div>`;
  }

  function drawHeatmap(root, pipeline) {
    const canvas = root.querySelector("#experts-heatmap");
    if (!canvas) return;
    const grid = pipeline.experts.per_layer || pipeline.experts;
    const cell = 14;
    canvas.width = grid[0].length * cell;
    canvas.height = grid.length * cell;
    const ctx = canvas.getContext("2d");
    grid.forEach((row, layer) => {
      const max = Math.max(1, ...row);
      row.forEach((count, expert) => {
        const shade = Math.round(255 - 200 * (count / max));
        ctx.fillStyle = `rgb(${shade}, ${shade}, 255)`;
        ctx.fillRect(expert * cell, layer * cell, cell - 1, cell - 1);
      });
    });
  }

  function images(pipeline) {
    const list = pipeline.images || [];
    if (!list.length) return "";
    const tags = list.map((img) => {
      const src = img.b64_json ? `data:image/png;base64,${img.b64_json}` : img.url || "";
      return /^(data:image\/png;base64,|https?:\/\/|\/)/.test(src)
        ? `<img src="${esc(src)}" alt="${esc(img.description || "generated image")}">` : "";
    }).join("");
    return `<h3>Images</h3><div class="images">${tags}</div>`;
  }

  function steps(pipeline) {
    const list = pipeline.steps || [];
    if (!list.length) return "";
    const badge = { ok: "ok", failed: "bad", timeout: "bad", skipped: "" };
    const items = list.map((s) => `<li><code>${esc(s.name)}</code>
      <span class="badge ${badge[s.status] ?? ""}">${esc(s.status)}</span>
      <span class="muted">${Number(s.latency_ms || 0).toFixed(0)} ms</span>
      ${s.detail && s.detail.model ? `<span class="muted">${esc(s.detail.model)} on
        ${esc(s.detail.server || "")}</span>` : ""}
      ${s.error ? `<div class="muted">${esc(s.error)}</div>` : ""}</li>`).join("");
    const notes = (pipeline.notes || []).map((n) => `<li>${esc(n)}</li>`).join("");
    return `<h3>Trace</h3><ol class="steps">${items}</ol>${notes ? `<ul class="muted">${notes}</ul>` : ""}`;
  }

  function render(root, pipeline) {
    if (!pipeline) {
      root.innerHTML = '<h2>Pipeline</h2><p class="muted">No pipeline for this answer.</p>';
      return;
    }
    const total = pipeline.latency_ms != null ? `<span class="muted"> · ${Number(pipeline.latency_ms).toFixed(0)} ms</span>` : "";
    const model = pipeline.model ? `<p class="muted">model ${esc(pipeline.model)}</p>` : "";
    root.innerHTML = `<h2>Pipeline${total}</h2>${model}` +
      [scoresChart, sources, toolCalls, reasoning, expertsGrid, images, steps]
        .map((part) => part(pipeline)).join("");
    drawHeatmap(root, pipeline);
  }

  return { render };
})();
