// sipwall web console: refreshes the page's main part in place and asks
// before destructive actions. Every page and action works without it.
"use strict";
(function () {
  const main = document.getElementById("main");
  const live = document.getElementById("live");
  if (!main) return;

  // Confirmation for forms that ask for it (hang up, unban, unblock).
  document.addEventListener("submit", (ev) => {
    const q = ev.target.getAttribute("data-confirm");
    if (q && !window.confirm(q)) ev.preventDefault();
  });

  const every = parseInt(main.dataset.refresh || "0", 10);
  if (!every) return;
  let delay = every * 1000;
  let failingSince = null;

  function busy() {
    // Do not replace the content under someone typing or selecting.
    const a = document.activeElement;
    if (a && main.contains(a) && (a.tagName === "INPUT" || a.tagName === "SELECT" || a.tagName === "TEXTAREA")) return true;
    const sel = window.getSelection();
    return sel && !sel.isCollapsed && main.contains(sel.anchorNode);
  }

  async function refresh() {
    if (document.hidden || busy()) return schedule();
    const url = new URL(window.location.href);
    url.searchParams.delete("msg");
    url.searchParams.delete("err");
    url.searchParams.set("fragment", "1");
    try {
      const res = await fetch(url, { credentials: "same-origin", cache: "no-store" });
      if (res.status === 401) {
        window.location.assign("/console/login?next=" + encodeURIComponent(window.location.pathname));
        return;
      }
      if (!res.ok) throw new Error("HTTP " + res.status);
      main.innerHTML = await res.text();
      failingSince = null;
      delay = every * 1000;
      live.textContent = "Live: updated " + new Date().toLocaleTimeString();
    } catch (e) {
      if (!failingSince) failingSince = new Date();
      delay = Math.min(delay * 2, 30000); // back off while sipwall does not answer
      live.textContent = "Not updating since " + failingSince.toLocaleTimeString() + " (" + e.message + "); retrying in " + Math.round(delay / 1000) + " s";
    }
    schedule();
  }

  function schedule() { window.setTimeout(refresh, delay); }
  schedule();
})();
