// The Report page: renders docs/report.md (tables and charts) as the gateway serves it,
// and draws the live counters of /report/live as small charts.
"use strict";

(() => {
  const FILES = "/report/files/";

  // The report's markdown: Markdown.render for text, plus the tables and the chart images
  // that bench.report writes (images only from the report's own folder).
  function renderReport(source) {
    const blocks = [];
    let text = [];
    const flush = () => { if (text.length) blocks.push(Markdown.render(text.join("\n"))); text = []; };
    const lines = source.replace(/\r\n/g, "\n").split("\n");
    for (let i = 0; i < lines.length; i++) {
      const image = lines[i].match(/^!\[([^\]]*)\]\((report\/[a-z_]+\.png)\)\s*$/);
      if (image) {
        flush();
        blocks.push(`<p><img src="${FILES}${image[2]}" alt="${Markdown.escape(image[1])}" loading="lazy"></p>`);
      } else if (lines[i].startsWith("|") && (lines[i + 1] || "").match(/^\|(\s*-+\s*\|)+\s*$/)) {
        flush();
        const rows = [];
        for (; i < lines.length && lines[i].startsWith("|"); i++) rows.push(lines[i]);
        i--;
        blocks.push(table(rows));
      } else {
        text.push(lines[i]);
      }
    }
    flush();
    return blocks.join("\n");
  }

  function cells(row) {
    return row.trim().replace(/^\|/, "").replace(/\|$/, "").split("|").map((c) => c.trim());
  }

  function table(rows) {
    const inline = (cell) => Markdown.render(cell).replace(/^<p>|<\/p>$/g, "");
    const head = cells(rows[0]).map((c) => `<th>${inline(c)}</th>`).join("");
    const body = rows.slice(2).map((row) =>
      `<tr>${cells(row).map((c) => `<td>${inline(c)}</td>`).join("")}</tr>`).join("");
    return `<table><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
  }

  async function loadReport() {
    const target = document.getElementById("report");
    const response = await fetch(`${FILES}report.md`, { cache: "no-cache" });
    if (!response.ok) {
      target.innerHTML = '<p class="muted">No report yet: run <code>make report</code>.</p>';
      return;
    }
    target.innerHTML = renderReport(await response.text());
  }

  // --- live counters -------------------------------------------------------------
  const history = { requests: [], tokens: [] };
  let previous = null;
  let firstExperts = null;

  function sparkline(id, values) {
    const svg = document.getElementById(id);
    const top = Math.max(1, ...values);
    const points = values.map((v, i) =>
      `${(i / Math.max(1, values.length - 1)) * 120},${30 - (v / top) * 28}`).join(" ");
    svg.innerHTML = `<polyline points="${points}"></polyline>`;
  }

  function bars(id, values) {
    const svg = document.getElementById(id);
    const top = Math.max(1, ...values);
    const width = 120 / values.length;
    svg.innerHTML = values.map((v, i) => {
      const h = (v / top) * 38;
      return `<rect x="${i * width + 1}" y="${40 - h}" width="${width - 2}" height="${h}"><title>expert ${i}: ${v}</title></rect>`;
    }).join("");
  }

  async function poll() {
    try {
      const sample = await (await fetch("/report/live", { cache: "no-cache" })).json();
      if (previous) {
        const seconds = Math.max(0.001, sample.time - previous.time);
        const rate = (key) => Math.max(0, ((sample[key] ?? 0) - (previous[key] ?? 0)) / seconds);
        for (const [key, name] of [["requests", "requests"], ["tokens", "generated_tokens"]]) {
          history[key].push(rate(name));
          if (history[key].length > 60) history[key].shift();
          document.getElementById(`live-${key}`).textContent = history[key].at(-1).toFixed(1);
          sparkline(`spark-${key}`, history[key]);
        }
      }
      if (sample.experts) {
        firstExperts = firstExperts || sample.experts;
        bars("experts", sample.experts.map((v, i) => v - firstExperts[i]));
      }
      previous = sample;
    } catch (error) {
      // the gateway is restarting: try again at the next tick
    }
  }

  loadReport();
  poll();
  setInterval(poll, 2000);
})();
