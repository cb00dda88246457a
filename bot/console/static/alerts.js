// Live alerts on the queue page: server-sent events from /console/events (bot/alerts.py).
// A critical tip shows a banner and refreshes the queue table in place: no reload, no sound,
// nothing loaded from elsewhere. Without JS the queue still works (reload to see new tips).
"use strict";
(function () {
  var box = document.querySelector(".live-alerts[data-events]");
  if (!box || !window.EventSource) return;
  var seen = {};           // tip id -> true: replays after a reconnection show nothing twice
  var shown = 0;
  var title = document.title;
  var source = null;

  function text(template, data) {
    return template.replace("{tip}", data.tip).replace("{language}", data.language)
      .replace("{channel}", data.channel);
  }

  function banner(data) {
    var p = document.createElement("p");
    p.className = "live-alert";
    p.setAttribute("role", "alert");
    p.dataset.testid = "live-alert";
    p.dataset.tip = String(data.tip);
    var link = document.createElement("a");
    link.href = "/console/tips/" + encodeURIComponent(data.tip);
    link.textContent = text(box.dataset.text, data);
    var close = document.createElement("button");
    close.type = "button";
    close.textContent = box.dataset.dismiss;
    close.addEventListener("click", function () {
      p.remove();
      shown = Math.max(0, shown - 1);
      document.title = shown ? "(" + shown + ") " + title : title;
    });
    p.appendChild(link);
    p.appendChild(close);
    box.insertBefore(p, box.firstChild);
    shown += 1;
    document.title = "(" + shown + ") " + title;  // visible on a background tab
  }

  function placeholderRow(data) {
    // Used when the page cannot be fetched again: enough to see and open the tip.
    var row = document.createElement("tr");
    row.className = "u-critical";
    row.dataset.tip = String(data.tip);
    var cells = ["", "0 min", "", "", "", data.language, data.channel, "", ""];
    cells.forEach(function (value, i) {
      var td = document.createElement("td");
      if (i === 0) {
        var badge = document.createElement("span");
        badge.className = "badge u-critical";
        badge.textContent = box.dataset.critical;
        td.appendChild(badge);
      } else if (i === 2 || i === 3) {
        var a = document.createElement("a");
        a.href = "/console/tips/" + encodeURIComponent(data.tip);
        a.textContent = i === 2 ? String(data.tip) : "…";
        td.appendChild(a);
      } else {
        td.textContent = value;
      }
      row.appendChild(td);
    });
    return row;
  }

  function refreshQueue(data) {
    var body = document.querySelector("[data-testid=queue] tbody");
    if (!body) return;
    // The same page again (same filters, same order), parsed off-screen; only the rows change.
    window.fetch(window.location.href, {credentials: "same-origin", redirect: "error"})
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.querySelector("[data-testid=queue] tbody");
        if (!fresh) throw new Error("no queue");
        body.replaceWith(document.importNode(fresh, true));
      })
      .catch(function () {
        if (!body.querySelector('tr[data-tip="' + String(Number(data.tip)) + '"]')) {
          body.insertBefore(placeholderRow(data), body.firstChild);
        }
      });
  }

  function offNotice(on) {
    var notice = box.querySelector(".live-off");
    if (on && !notice) {
      notice = document.createElement("p");
      notice.className = "live-off";
      notice.setAttribute("role", "status");
      notice.textContent = box.dataset.off;
      box.appendChild(notice);
    } else if (!on && notice) {
      notice.remove();
    }
  }

  function connect() {
    source = new EventSource(box.dataset.events);
    source.addEventListener("open", function () {
      box.dataset.live = "open";
      offNotice(false);
    });
    source.addEventListener("critical", function (event) {
      var data;
      try { data = JSON.parse(event.data); } catch (e) { return; }
      if (!data || seen[data.tip]) return;
      seen[data.tip] = true;
      banner(data);
      refreshQueue(data);
    });
    source.addEventListener("error", function () {
      // EventSource retries by itself after a dropped connection (readyState CONNECTING).
      // CLOSED means it gave up (a redirect to the login page, a 5xx): say so, try later.
      if (source.readyState === EventSource.CLOSED) {
        box.dataset.live = "closed";
        offNotice(true);
        window.setTimeout(connect, 15000);
      }
    });
  }

  connect();
})();
