// What every page shares: the phone menu, the browser's time zone for the server's dates, and
// the language switcher coming back to the address the page shows now (HTMX may have pushed
// one since the page was rendered). Pages work without it: the menu is then always open, dates
// are in the server's time zone, the switcher comes back to the address the page was loaded at.
(() => {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  if (zone && !document.cookie.split("; ").includes(`tz=${zone}`)) {
    document.cookie = `tz=${zone}; path=/; max-age=31536000; SameSite=Lax`;
  }
  document.documentElement.classList.add("js");
})();

document.addEventListener("submit", (ev) => {
  const form = ev.target;
  if (!(form instanceof HTMLFormElement) || !form.matches(".language-switcher")) return;
  const next = form.querySelector('input[name="next"]');
  if (next) next.value = location.pathname + location.search + location.hash;
});

document.addEventListener("DOMContentLoaded", () => {
  const toggle = document.querySelector(".nav-toggle");
  const header = document.querySelector(".topbar");
  if (!toggle || !header) return;
  toggle.hidden = false;
  const setOpen = (open) => {
    header.classList.toggle("open", open);
    toggle.setAttribute("aria-expanded", String(open));
  };
  toggle.addEventListener("click", () => setOpen(!header.classList.contains("open")));
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape" && header.classList.contains("open")) { setOpen(false); toggle.focus(); }
  });
});
