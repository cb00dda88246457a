// Tip line console: small progressive enhancements only; every page works without JS.
"use strict";
(function () {
  // Clocks: time since a tip was received, ticking, and marked late past its level's limit.
  function fmt(seconds) {
    var m = Math.max(0, Math.floor(seconds / 60));
    if (m < 60) return m + " min";
    var h = Math.floor(m / 60); m = m % 60;
    if (h < 48) return h + " h " + (m < 10 ? "0" : "") + m;
    return Math.floor(h / 24) + " d " + (h % 24) + " h";
  }
  function tick() {
    var now = Date.now();
    document.querySelectorAll(".clock[data-received]").forEach(function (el) {
      var age = (now - Date.parse(el.dataset.received)) / 1000;
      if (isNaN(age)) return;
      el.textContent = fmt(age);
      var late = age > Number(el.dataset.limit || 86400);
      el.classList.toggle("late", late);
      var row = el.closest("tr");
      if (row) row.classList.toggle("overdue", late);
    });
  }
  // Selecting text in the report fills the redaction field.
  function selection() {
    var target = document.querySelector("[data-selection-target]");
    if (!target) return;
    document.addEventListener("mouseup", function () {
      var sel = window.getSelection();
      var text = sel ? String(sel).trim() : "";
      if (!text || !sel.anchorNode) return;
      var host = sel.anchorNode.parentElement;
      if (host && host.closest(".text, .thread")) target.value = text;
    });
  }
  function confirms() {
    document.querySelectorAll("[data-confirm]").forEach(function (button) {
      button.addEventListener("click", function (event) {
        if (!window.confirm(button.dataset.confirm)) event.preventDefault();
      });
    });
  }
  function autosubmit() {
    document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
      select.addEventListener("change", function () { select.form.submit(); });
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    selection(); confirms(); autosubmit();
    // The server's clock drew the page; only start ticking once the minute changes.
    window.setInterval(tick, 30000);
  });
})();
