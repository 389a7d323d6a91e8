// Images in the chat composer: attach, paste and drop, each re-encoded to a small PNG and
// shown as a removable thumbnail until the message is sent (app.js sends `attached`).

const MAX_ATTACHED = 4; // images one message may carry
const MAX_SIDE = 512; // px, the longer side of an attached image after scaling
let attached = []; // the composer's images, { name, url } (url: data:image/png;base64,...)

// An image file as a PNG data URL, its longer side at most MAX_SIDE px: the canvas
// re-encodes whatever the browser can read (a pasted GIF too) into a small PNG.
async function pngDataUrl(file) {
  const bitmap = await createImageBitmap(file);
  const scale = Math.min(1, MAX_SIDE / Math.max(bitmap.width, bitmap.height));
  const canvas = document.createElement("canvas");
  canvas.width = Math.max(1, Math.round(bitmap.width * scale));
  canvas.height = Math.max(1, Math.round(bitmap.height * scale));
  canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  bitmap.close();
  return canvas.toDataURL("image/png");
}

// Add `files` to the message being written; each one left out is said why, under the thumbnails.
async function attach(files, pasted = false) {
  const refused = [];
  for (const file of files) {
    const name = pasted ? "pasted image" : file.name || "image";
    const full = `${name} was not added: at most ${MAX_ATTACHED} images per message.`;
    if (attached.length >= MAX_ATTACHED) { refused.push(full); continue; }
    let url;
    try {
      url = await pngDataUrl(file);
    } catch (err) {
      refused.push(`${name} was not added: it could not be read as an image.`);
      continue;
    }
    // Checked again: another paste or drop may have filled the message meanwhile.
    if (attached.length >= MAX_ATTACHED) refused.push(full); else attached.push({ name, url });
  }
  renderAttachments();
  attachNote(refused.join(" "));
}

function renderAttachments() {
  const list = $("attachments");
  list.replaceChildren(...attached.map((image) => {
    const item = document.createElement("li");
    const thumb = document.createElement("img");
    thumb.src = image.url;
    thumb.alt = image.name;
    const remove = button("×", `Remove ${image.name}`, false);
    remove.classList.add("remove");
    remove.addEventListener("click", () => {
      attached = attached.filter((other) => other !== image);
      renderAttachments();
      attachNote("");
      $("prompt").focus();
    });
    item.append(thumb, remove);
    return item;
  }));
  list.hidden = !attached.length;
}

function attachNote(text) {
  $("attach-note").textContent = text;
  $("attach-note").hidden = !text;
}

function hasFiles(event) {
  return Boolean(event.dataTransfer) && [...event.dataTransfer.types].includes("Files");
}

// Attach button, paste, and drop anywhere on the page (a dropped file never opens in the tab).
function initAttachments() {
  const input = $("image-input");
  $("attach").addEventListener("click", () => input.click());
  input.addEventListener("change", () => {
    attach([...input.files]);
    input.value = "";
  });
  document.addEventListener("paste", (event) => {
    const files = [...((event.clipboardData && event.clipboardData.files) || [])];
    if (!files.length) return;
    event.preventDefault();
    attach(files, true);
  });
  document.addEventListener("dragover", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    $("composer").classList.add("dropping");
  });
  document.addEventListener("dragleave", (event) => {
    if (!event.relatedTarget) $("composer").classList.remove("dropping");
  });
  document.addEventListener("drop", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    $("composer").classList.remove("dropping");
    attach([...event.dataTransfer.files]);
  });
  $("viewer").addEventListener("click", () => $("viewer").close());
}
