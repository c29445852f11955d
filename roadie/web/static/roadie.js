// roadie dashboard: confirmations, selections and live refresh. Plain JavaScript, no build step;
// every page works without it (the server asks again before mass actions).
"use strict";

(function () {
  const LIVE_KEY = "roadie.live";
  const LIVE_EVERY = 5000; // ms between refreshes

  // -- selections ---------------------------------------------------------------------------

  function selected(form) {
    if (!form) return [];
    return Array.from(document.querySelectorAll('input[name="ids"]:checked')).filter(
      (box) => box.form === form
    );
  }

  function updateSelectionButtons() {
    document.querySelectorAll("[data-needs-selection]").forEach((button) => {
      button.disabled = selected(button.form).length === 0;
    });
    document.querySelectorAll("[data-select-all]").forEach((all) => {
      const form = document.getElementById(all.dataset.selectAll);
      const boxes = Array.from(document.querySelectorAll('input[name="ids"]')).filter(
        (box) => box.form === form
      );
      const checked = boxes.filter((box) => box.checked).length;
      all.checked = boxes.length > 0 && checked === boxes.length;
      all.indeterminate = checked > 0 && checked < boxes.length;
    });
  }

  document.addEventListener("change", (event) => {
    const target = event.target;
    if (target.matches && target.matches("[data-select-all]")) {
      const form = document.getElementById(target.dataset.selectAll);
      document.querySelectorAll('input[name="ids"]').forEach((box) => {
        if (box.form === form) box.checked = target.checked;
      });
    }
    if (target.id === "live") {
      try {
        localStorage.setItem(LIVE_KEY, target.checked ? "on" : "off");
      } catch (e) {
        /* private mode: the choice lasts for this page only */
      }
    }
    updateSelectionButtons();
  });

  // -- confirmations: data-confirm on a form or on the button that submits it ----------------

  document.addEventListener("submit", (event) => {
    const form = event.target;
    const submitter = event.submitter;
    const holder = submitter && submitter.dataset.confirm ? submitter : form;
    const message = holder.dataset ? holder.dataset.confirm : null;
    if (!message) return;
    const count = selected(form).length;
    if (!window.confirm(message.replace("{n}", String(count)))) {
      event.preventDefault();
    }
  });

  // -- live refresh: re-fetch this page and swap every [data-live] element ---------------------

  let busy = false;

  function liveWanted() {
    const toggle = document.getElementById("live");
    return toggle !== null && toggle.checked;
  }

  function userIsBusy(region) {
    const active = document.activeElement;
    if (active && region.contains(active) && active.matches("input, select, textarea, button")) {
      return active.type !== "checkbox";
    }
    return false;
  }

  async function refresh() {
    if (busy || document.hidden || !liveWanted()) return;
    const regions = Array.from(document.querySelectorAll("[data-live][id]"));
    if (regions.length === 0) return;
    busy = true;
    try {
      const response = await fetch(window.location.href, {
        credentials: "same-origin",
        cache: "no-store",
        headers: { "X-Roadie-Live": "1" },
      });
      if (!response.ok) return;
      const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
      const kept = new Set(
        Array.from(document.querySelectorAll('input[name="ids"]:checked')).map((box) => box.value)
      );
      for (const region of regions) {
        const replacement = fresh.getElementById(region.id);
        if (!replacement || userIsBusy(region)) continue;
        const openDetails = new Set(
          Array.from(region.querySelectorAll("details[open][id]")).map((d) => d.id)
        );
        const nodes = Array.from(replacement.childNodes).map((node) => document.adoptNode(node));
        region.replaceChildren(...nodes);
        region.querySelectorAll('input[name="ids"]').forEach((box) => {
          box.checked = kept.has(box.value);
        });
        region.querySelectorAll("details[id]").forEach((d) => {
          if (openDetails.has(d.id)) d.open = true;
        });
      }
      updateSelectionButtons();
    } catch (e) {
      /* the server is restarting or the network dropped: try again at the next tick */
    } finally {
      busy = false;
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const toggle = document.getElementById("live");
    if (toggle) {
      try {
        if (localStorage.getItem(LIVE_KEY) === "off") toggle.checked = false;
      } catch (e) {
        /* no storage: keep the default */
      }
      window.setInterval(refresh, LIVE_EVERY);
    }
    updateSelectionButtons();
  });
})();
