// Legato dashboard: refresh the live parts of a page ([data-live] elements) in place, show a
// banner while the server cannot read the board or persistence, and reload an error page by
// itself once the server answers again ([data-recover]). No framework, no build step.
"use strict";
(function () {
  const every = Number(document.body.dataset.refresh) || 1000;
  const banner = document.getElementById("banner");

  function down(text) {
    banner.textContent = text;  // text, never HTML
    banner.hidden = false;
  }

  function up() {
    banner.hidden = true;
  }

  // Which <details> the reader opened, so a refresh keeps them open.
  function detailsKey(node) {
    const owner = node.closest("[data-atom]");
    const summary = node.querySelector("summary");
    return (owner ? owner.dataset.atom : "") + "|" + (summary ? summary.textContent : "");
  }

  async function refresh(element) {
    const typing = document.activeElement;
    if (typing && element.contains(typing) && typing.matches("input, textarea, select")) {
      return;  // never wipe what the reader is typing into a form of the live part
    }
    let response;
    try {
      response = await fetch(element.dataset.live, {cache: "no-store", credentials: "same-origin"});
    } catch (error) {
      down("The dashboard cannot be reached; retrying.");
      return;
    }
    const text = await response.text();
    if (!response.ok) {
      down("Unavailable (" + response.status + "): " + text.slice(0, 300) + " Retrying.");
      return;
    }
    const opened = new Set(Array.from(element.querySelectorAll("details[open]"), detailsKey));
    element.innerHTML = text;  // rendered by the server with every value escaped
    element.querySelectorAll("details").forEach(function (node) {
      if (opened.has(detailsKey(node))) {
        node.open = true;
      }
    });
    document.body.dataset.updated = String(Date.now());
    up();
  }

  document.querySelectorAll("[data-live]").forEach(function (element) {
    async function loop() {
      await refresh(element);
      setTimeout(loop, every);
    }
    setTimeout(loop, every);
  });

  const recover = document.querySelector("[data-recover]");
  if (recover) {
    const poll = async function () {
      try {
        const response = await fetch(recover.dataset.recover, {cache: "no-store"});
        if (response.ok) {
          window.location.reload();
          return;
        }
      } catch (error) {
        // still down: try again
      }
      setTimeout(poll, every);
    };
    setTimeout(poll, every);
  }
})();
