// The Collections page's class filter: typing narrows each dataset's list of classes.
// Without JavaScript the box stays hidden and the whole list (A to Z) is shown.
// Every word on the page is in the template; this only shows and hides what is there.
document.addEventListener("DOMContentLoaded", () => {
  for (const box of document.querySelectorAll("[data-class-filter]")) {
    const list = document.getElementById(box.dataset.classFilter);
    const input = box.querySelector("input");
    const empty = box.parentElement.querySelector("[data-filter-empty]");
    if (!list || !input) continue;
    box.hidden = false;
    input.addEventListener("input", () => {
      const wanted = input.value.trim().toLocaleLowerCase();
      let shown = 0;
      for (const item of list.children) {
        const match = !wanted || (item.dataset.names || "").includes(wanted);
        item.hidden = !match;
        if (match) shown += 1;
      }
      if (empty) empty.hidden = shown > 0;
    });
  }
});
