// The search page with JavaScript: the chosen image as a chip (preview, remove), cleared after
// each search (the text and the query language stay as the person left them: a language
// chosen is never reset behind their back); focus and announcements when results swap in; one
// description card per image.
// Every text shown comes from the page's HTML. Without this file the form posts as a plain
// form, the file input is the browser's own, and Describe opens the description page.
(() => {
  const announce = (text) => {
    const status = document.getElementById("results-status");
    if (status && text) status.textContent = text;
  };

  const setUpImageChip = (form) => {
    const zone = document.getElementById("dropzone");
    const input = form.querySelector("input[type=file]");
    const chip = document.getElementById("image-chip");
    const preview = document.getElementById("image-chip-preview");
    const name = document.getElementById("image-chip-name");
    const remove = document.getElementById("image-chip-remove");
    const note = document.getElementById("text-and-image-note");
    const text = form.querySelector("input[name=text]");
    if (!zone || !input || !chip) return null;
    let previewUrl = null;

    const showNote = () => {
      if (note) note.hidden = !(input.files.length && text && text.value.trim());
    };
    const show = () => {
      if (previewUrl) URL.revokeObjectURL(previewUrl);
      previewUrl = null;
      const file = input.files[0];
      chip.hidden = !file;
      zone.classList.toggle("has-file", Boolean(file));
      if (file) {
        previewUrl = URL.createObjectURL(file);
        preview.src = previewUrl;
        name.textContent = file.name;
      } else {
        preview.removeAttribute("src");
        name.textContent = "";
      }
      showNote();
    };
    const clear = () => {
      input.value = "";
      show();
    };

    input.addEventListener("change", show);
    if (text) text.addEventListener("input", showNote);
    remove.addEventListener("click", () => {
      clear();
      if (text) text.focus();
    });
    ["dragenter", "dragover"].forEach((e) => zone.addEventListener(e, (ev) => { ev.preventDefault(); zone.classList.add("over"); }));
    ["dragleave", "drop"].forEach((e) => zone.addEventListener(e, () => zone.classList.remove("over")));
    zone.addEventListener("drop", (ev) => {
      ev.preventDefault();
      if (ev.dataTransfer.files.length) {
        input.files = ev.dataTransfer.files;
        show();
      }
    });
    show();  // a file the browser kept across a reload
    return clear;
  };

  document.addEventListener("DOMContentLoaded", () => {
    const form = document.getElementById("search-form");
    const clearImage = form ? setUpImageChip(form) : null;
    const indicator = document.getElementById("searching");

    document.body.addEventListener("htmx:beforeRequest", (ev) => {
      const source = ev.detail.elt;
      // Describe on an image that already has its card: bring that card into view instead
      if (source.classList && source.classList.contains("describe-form")) {
        const slot = document.getElementById(source.dataset.slot);
        const card = slot && slot.querySelector("article.description");
        if (card) {
          ev.preventDefault();
          card.scrollIntoView({ block: "nearest", behavior: "smooth" });
          card.focus({ preventScroll: true });
        }
        return;
      }
      if (source === form && indicator) {
        const shown = indicator.querySelector(indicator.classList.contains("model-cold") ? ".when-cold" : ".when-warm");
        if (shown) announce(shown.textContent.trim());
      }
    });

    document.body.addEventListener("htmx:afterSwap", (ev) => {
      const target = ev.detail.target;
      const results = document.getElementById("results");
      if (ev.detail.requestConfig && ev.detail.requestConfig.elt === form && results) {
        if (results.dataset.query) {
          // a search ran: the next Enter searches for what is typed, not this image again
          if (clearImage) clearImage();
          if (indicator) indicator.classList.remove("model-cold");
        }
        const heading = document.getElementById("results-title");
        if (heading) heading.focus();
        announce(results.dataset.announce);
        return;
      }
      if (target && target.classList.contains("describe-slot")) {
        const card = target.querySelector(".description, .description-error");
        target.closest(".result")?.classList.add("described");
        if (card) {
          card.scrollIntoView({ block: "nearest", behavior: "smooth" });
          if (card.hasAttribute("tabindex")) card.focus({ preventScroll: true });
        }
      }
    });

    // "Load more": focus moves to the first of the new results
    document.body.addEventListener("htmx:afterSettle", (ev) => {
      const source = ev.detail.requestConfig && ev.detail.requestConfig.elt;
      if (!source || !source.dataset || !source.dataset.nextRank) return;
      const first = document.getElementById(`result-${source.dataset.nextRank}`);
      const link = first && first.querySelector("a");
      if (link) link.focus();
    });
  });
})();
