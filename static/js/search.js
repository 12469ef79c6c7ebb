// Drag-and-drop onto the search form's file input; the plain file picker works without it.
document.addEventListener("DOMContentLoaded", () => {
  const zone = document.getElementById("dropzone");
  if (!zone) return;
  const input = zone.querySelector("input[type=file]");
  const label = zone.querySelector("span");
  const show = () => { if (input.files.length) label.textContent = input.files[0].name; };
  input.addEventListener("change", show);
  ["dragenter", "dragover"].forEach((e) => zone.addEventListener(e, (ev) => { ev.preventDefault(); zone.classList.add("over"); }));
  ["dragleave", "drop"].forEach((e) => zone.addEventListener(e, () => zone.classList.remove("over")));
  zone.addEventListener("drop", (ev) => { ev.preventDefault(); input.files = ev.dataTransfer.files; show(); });
});
