// carebridge console: the live queue and the live transcript, by polling the JSON API.
// Plain JavaScript, no build step, no framework; text is always set with textContent.
(function () {
  "use strict";
  var pollMs = Number(document.body.dataset.pollMs) || 5000;

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function getJSON(url) {
    // X-Carebridge-Poll: background refreshes do not keep an idle log-in alive.
    var headers = { Accept: "application/json", "X-Carebridge-Poll": "1" };
    return fetch(url, { credentials: "same-origin", headers: headers })
      .then(function (r) {
        if (r.status === 401) {
          window.location.href = "/console/login?next=" + encodeURIComponent(window.location.pathname);
          return null;
        }
        return r.ok ? r.json() : null;
      })
      .catch(function () { return null; });
  }

  function every(fn) {
    var busy = false;
    window.setInterval(function () {
      if (busy || document.hidden) return;
      busy = true;
      fn().then(function () { busy = false; }, function () { busy = false; });
    }, pollMs);
  }

  // Rows that link somewhere open on click.
  document.addEventListener("click", function (ev) {
    var row = ev.target.closest && ev.target.closest("tr[data-href]");
    if (row && !ev.target.closest("a, button, form")) window.location.href = row.dataset.href;
  });

  // --- the queue ---------------------------------------------------------------------------
  var queueBody = document.getElementById("queue-body");
  if (queueBody) {
    var counts = document.getElementById("queue-counts");
    var renderRow = function (t) {
      var tr = el("tr", t.status + (t.overdue ? " overdue" : ""));
      tr.dataset.href = t.url;
      var c1 = el("td");
      c1.appendChild(el("span", "badge " + t.priority, t.priority));
      if (t.overdue) {
        c1.appendChild(document.createTextNode(" "));
        c1.appendChild(el("span", "badge overdue", "overdue"));
      }
      var c2 = el("td");
      var a = el("a", null, "#" + t.id);
      a.href = t.url;
      c2.appendChild(a);
      var c4 = el("td");
      c4.appendChild(el("b", null, t.reason));
      c4.appendChild(document.createTextNode(" · " + t.level_label));
      if (t.red_flags.length) {
        c4.appendChild(el("br"));
        c4.appendChild(el("span", "flags", t.red_flags.join(", ")));
      }
      var c5 = el("td");
      c5.appendChild(el("span", "mono", t.contact));
      c5.appendChild(document.createTextNode(" "));
      c5.appendChild(el("span", "muted", t.channel));
      var c6 = el("td");
      c6.appendChild(t.status === "claimed" ? el("span", "pill claimed", t.assignee) : el("span", "pill waiting", "waiting"));
      [c1, c2, el("td", "nowrap", t.waiting), c4, c5, c6].forEach(function (c) { tr.appendChild(c); });
      return tr;
    };
    every(function () {
      return getJSON("/api/queue").then(function (data) {
        if (!data) return;
        var rows = data.tickets.map(renderRow);
        if (!rows.length) {
          var empty = el("tr", "empty");
          var td = el("td", null, "No open tickets.");
          td.colSpan = 6;
          empty.appendChild(td);
          rows = [empty];
        }
        queueBody.replaceChildren.apply(queueBody, rows);
        if (counts) counts.textContent = data.counts.waiting + " waiting · " + data.counts.claimed + " with a clinician";
      });
    });
  }

  // --- the transcript of a ticket ------------------------------------------------------------
  var transcript = document.getElementById("transcript");
  if (transcript) {
    var after = Number(transcript.dataset.after) || 0;
    var status = transcript.dataset.status;
    var assignee = transcript.dataset.assignee;
    var changed = document.getElementById("changed");
    var renderLine = function (e) {
      var div = el("div", "msg fresh " + e.direction + (e.author ? " clinician" : ""));
      div.appendChild(el("p", null, e.text));
      var who = e.direction === "in" ? "patient" : (e.author || "bot");
      div.appendChild(el("span", "meta", who + " · " + e.at));
      return div;
    };
    transcript.scrollTop = transcript.scrollHeight;
    every(function () {
      return getJSON(transcript.dataset.api + "?after=" + after).then(function (data) {
        if (!data) return;
        if (data.entries.length) {
          var none = document.getElementById("no-messages");
          if (none) none.remove();
          data.entries.forEach(function (e) {
            transcript.appendChild(renderLine(e));
            after = Math.max(after, e.id);
          });
          transcript.scrollTop = transcript.scrollHeight;
        }
        if (changed && (data.status !== status || (data.assignee || "") !== assignee)) {
          changed.classList.remove("hidden");
        }
      });
    });
  }
})();
