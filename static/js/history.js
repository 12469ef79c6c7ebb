// Confirm steps in place: "Delete" opens its confirm beside it (the markup and words are the
// template's), Cancel or Escape closes it; the "delete all" panel that HTMX brings in closes the
// same way. Without this file every Delete link opens its confirm page instead.
(() => {
  if (window.tinyragConfirm) return; // the include and the page may both load it
  window.tinyragConfirm = true;

  let refocusRow = null; // after a row's delete, focus goes to the row that took its place

  const open = (box) => {
    box.querySelector("[data-confirm-open]").hidden = true;
    const body = box.querySelector("[data-confirm-body]");
    body.hidden = false;
    body.querySelector("[data-confirm-cancel]").focus(); // the safe choice first
  };
  const close = (box) => {
    box.querySelector("[data-confirm-body]").hidden = true;
    const link = box.querySelector("[data-confirm-open]");
    link.hidden = false;
    link.focus();
  };
  const closeSlot = (slot) => {
    slot.replaceChildren();
    const trigger = slot.parentElement.querySelector("[data-confirm-trigger]");
    if (trigger) { trigger.hidden = false; trigger.focus(); }
  };

  document.addEventListener("click", (ev) => {
    const opener = ev.target.closest("[data-confirm-open]");
    if (opener) {
      ev.preventDefault();
      open(opener.closest("[data-confirm-inline]"));
      return;
    }
    const cancel = ev.target.closest("[data-confirm-cancel]");
    if (!cancel) return;
    const box = cancel.closest("[data-confirm-inline]");
    const slot = cancel.closest("[data-confirm-slot]");
    if (box) { ev.preventDefault(); close(box); } else if (slot) { ev.preventDefault(); closeSlot(slot); }
    // on a confirm page of its own, Cancel is a plain link back
  });

  document.addEventListener("keydown", (ev) => {
    if (ev.key !== "Escape") return;
    const box = ev.target.closest && ev.target.closest("[data-confirm-inline]");
    const slot = ev.target.closest && ev.target.closest("[data-confirm-slot]");
    if (box && !box.querySelector("[data-confirm-body]").hidden) close(box);
    else if (slot && slot.firstElementChild) closeSlot(slot);
  });

  document.addEventListener("htmx:beforeRequest", (ev) => {
    const row = ev.target.closest && ev.target.closest("#history tbody tr");
    refocusRow = row ? [...row.parentElement.children].indexOf(row) : null;
  });

  document.addEventListener("htmx:afterSettle", (ev) => {
    const slot = ev.target.closest && ev.target.closest("[data-confirm-slot]");
    if (slot && slot.firstElementChild) {
      const trigger = slot.parentElement.querySelector("[data-confirm-trigger]");
      if (trigger) trigger.hidden = true;
      const cancel = slot.querySelector("[data-confirm-cancel]");
      if (cancel) cancel.focus();
      return;
    }
    if (refocusRow === null) return;
    const links = document.querySelectorAll("#history .query-link");
    const target = links[Math.min(refocusRow, links.length - 1)] || document.getElementById("history");
    refocusRow = null;
    if (target) target.focus();
  });
})();
