// Pampa dashboard: live refresh of the page's [data-live] sections, which
// stops while the tab is hidden and can be paused; confirmations; select
// all. The pages work without it.
"use strict";

(function () {
  const body = document.body;
  const every = Number(body.dataset.refresh || 0) * 1000;
  const button = document.getElementById("live");
  let live = localStorage.getItem("pampa.live") !== "off";
  let timer = null;

  function show() {
    if (!button) return;
    button.textContent = live ? "Live: on" : "Live: paused";
    button.setAttribute("aria-pressed", String(live));
  }

  async function refresh() {
    timer = null;
    if (!live || document.hidden) return;
    try {
      const res = await fetch(location.href, { headers: { "X-Pampa-Refresh": "1" }, credentials: "same-origin" });
      if (res.redirected || !res.ok) return; // signed out, or an error: leave the page as it is
      const html = await res.text();
      if (!live) return; // paused while the page was on its way
      const doc = new DOMParser().parseFromString(html, "text/html");
      for (const fresh of doc.querySelectorAll("[data-live][id]")) {
        const old = document.getElementById(fresh.id);
        // A section where the user has ticked boxes is left as it is.
        if (old && !old.querySelector("input[type=checkbox]:checked")) old.replaceWith(document.importNode(fresh, true));
      }
    } catch (e) {
      // the dashboard is restarting or the network is down: try again later
    } finally {
      schedule();
    }
  }

  function schedule() {
    if (every > 0 && live && !document.hidden && timer === null) timer = setTimeout(refresh, every);
  }

  if (every > 0) {
    show();
    schedule();
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden) refresh();
    });
    if (button) button.addEventListener("click", function () {
      live = !live;
      localStorage.setItem("pampa.live", live ? "on" : "off");
      show();
      if (live) refresh();
    });
  }

  document.addEventListener("submit", function (ev) {
    const form = ev.target;
    const question = form.dataset.confirm;
    if (question && !confirm(question)) ev.preventDefault();
  });

  for (const all of document.querySelectorAll("input.select-all")) {
    all.addEventListener("change", function () {
      for (const box of document.querySelectorAll("input[type=checkbox][name=key]")) {
        if (box.getAttribute("form") === all.dataset.form) box.checked = all.checked;
      }
    });
  }
})();
