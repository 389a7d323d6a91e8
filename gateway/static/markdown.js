// A small, safe markdown renderer: everything is HTML-escaped first, then a
// known subset (fences, inline code, headings, lists, bold, italics, links,
// citations [n]) is turned into tags. No raw HTML from a model reaches the page.
"use strict";

const Markdown = (() => {
  const escape = (text) =>
    text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
        .replace(/"/g, "&quot;").replace(/'/g, "&#39;");

  function inline(text) {
    const codes = [];
    let html = escape(text).replace(/`([^`]+)`/g, (_, code) => {
      codes.push(code);
      return `\u0000${codes.length - 1}\u0000`;
    });
    html = html
      .replace(/\*\*([^*]+)\*\*/g, "<strong>$1</strong>")
      .replace(/(^|[^*])\*([^*\s][^*]*)\*/g, "$1<em>$2</em>")
      .replace(/\[([^\]]+)\]\((https?:\/\/[^\s)]+)\)/g,
        '<a href="$2" target="_blank" rel="noopener noreferrer">$1</a>')
      .replace(/\[(\d{1,3})\]/g, '<span class="cite" data-cite="$1">[$1]</span>');
    return html.replace(/\u0000(\d+)\u0000/g, (_, i) => `<code>${codes[Number(i)]}</code>`);
  }

  function render(source) {
    const lines = (source || "").replace(/\r\n/g, "\n").split("\n");
    const out = [];
    let list = null;
    let paragraph = [];
    const flushParagraph = () => {
      if (paragraph.length) out.push(`<p>${paragraph.map(inline).join("<br>")}</p>`);
      paragraph = [];
    };
    const closeList = () => { if (list) { out.push(`</${list}>`); list = null; } };
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i];
      const fence = line.match(/^```\s*([\w+-]*)\s*$/);
      if (fence) {
        flushParagraph(); closeList();
        const body = [];
        for (i++; i < lines.length && !/^```\s*$/.test(lines[i]); i++) body.push(lines[i]);
        out.push(`<pre><code>${escape(body.join("\n"))}</code></pre>`);
        continue;
      }
      const heading = line.match(/^(#{1,4})\s+(.*)$/);
      const ordered = line.match(/^\s*(\d+)[.)]\s+(.*)$/);
      const bullet = line.match(/^\s*[-*+]\s+(.*)$/);
      if (heading) {
        flushParagraph(); closeList();
        const level = heading[1].length + 2;
        out.push(`<h${level}>${inline(heading[2])}</h${level}>`);
      } else if (ordered || bullet) {
        flushParagraph();
        const kind = ordered ? "ol" : "ul";
        if (list !== kind) {
          closeList();
          out.push(ordered && ordered[1] !== "1" ? `<ol start="${Number(ordered[1])}">` : `<${kind}>`);
          list = kind;
        }
        out.push(`<li>${inline(ordered ? ordered[2] : bullet[1])}</li>`);
      } else if (!line.trim()) {
        flushParagraph(); closeList();
      } else {
        closeList();
        paragraph.push(line);
      }
    }
    flushParagraph(); closeList();
    return out.join("\n");
  }

  return { render, escape };
})();
