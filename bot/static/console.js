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
      var tr = el("tr", t.status + (t.overdue ? " overdue" : "") + (t.test ? " test" : ""));
      tr.dataset.href = t.url;
      var c1 = el("td");
      c1.appendChild(el("span", "badge " + t.priority, t.priority));
      if (t.overdue) {
        c1.appendChild(document.createTextNode(" "));
        c1.appendChild(el("span", "badge overdue", "overdue"));
      }
      if (t.test) {  // a test contact (the browser simulator)
        c1.appendChild(document.createTextNode(" "));
        c1.appendChild(el("span", "badge test", "TEST"));
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
      var cells = [c1, c2, el("td", "nowrap", t.waiting), c4, c5, c6];
      ["Priority", "Ticket", "Waiting", "Why", "Patient", "Status"].forEach(function (label, i) {
        cells[i].dataset.label = label;  // the card layout under 600 px shows these
        tr.appendChild(cells[i]);
      });
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
  // --- broadcasts: live text checks while the coordinator types -------------------------------
  // The server computes them with the same service as the CLI (segments, encoding, cost).
  var bcForm = document.getElementById("broadcast-form");
  if (bcForm && bcForm.dataset.checkApi) {
    var csrfField = bcForm.querySelector("input[name=csrf]");
    var checkTimer = null;
    var checkSeq = 0;
    var renderChecks = function (byLang) {
      Object.keys(byLang).forEach(function (lang) {
        var list = document.getElementById("checks-" + lang);
        if (!list) return;
        var items = byLang[lang].map(function (c) {
          var li = el("li", c.problem ? "problem" : (c.segments > 1 ? "multi" : null));
          li.dataset.channel = c.channel;
          li.appendChild(el("span", "check-line", c.line));
          c.notes.forEach(function (n) { li.appendChild(el("span", "check-note", n)); });
          if (c.problem) li.appendChild(el("span", "check-note warn", c.problem));
          return li;
        });
        list.replaceChildren.apply(list, items);
      });
    };
    var runCheck = function () {
      var seq = ++checkSeq;
      var body = new URLSearchParams();
      bcForm.querySelectorAll("textarea[name^='text_'], textarea[name^='sms_'], select[name=whatsapp_template]")
        .forEach(function (f) { body.append(f.name, f.value); });
      fetch(bcForm.dataset.checkApi, {
        method: "POST",
        credentials: "same-origin",
        headers: { Accept: "application/json", "X-CSRF-Token": csrfField ? csrfField.value : "" },
        body: body
      })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) { if (data && seq === checkSeq) renderChecks(data.checks); })
        .catch(function () { return null; });
    };
    bcForm.addEventListener("input", function (ev) {
      if (!ev.target.matches("textarea, select")) return;
      window.clearTimeout(checkTimer);
      checkTimer = window.setTimeout(runCheck, 250);
    });
    // The schedule: show only the fields of the choice made.
    var whenFields = bcForm.querySelectorAll("fieldset.when");
    var showWhen = function () {
      var chosen = bcForm.querySelector("input[name=when]:checked");
      whenFields.forEach(function (f) {
        var off = !chosen || f.dataset.when !== chosen.value;
        f.classList.toggle("hidden", off);
        f.disabled = off; // not submitted either
      });
    };
    bcForm.addEventListener("change", function (ev) { if (ev.target.name === "when") showWhen(); });
    showWhen();
  }

  // --- broadcasts: live stats, the chart redrawn from the server's geometry ------------------------
  var statsCard = document.getElementById("broadcast-stats");
  if (statsCard) {
    var SVG_NS = "http://www.w3.org/2000/svg";
    var chartNode = document.getElementById("stats-chart");
    var statsBody = document.getElementById("stats-body");
    var pill = document.getElementById("broadcast-status");
    var progress = document.getElementById("stats-progress");
    var changedNote = document.getElementById("changed");
    var columns = statsCard.dataset.columns.split(",");
    var shownStatus = statsCard.dataset.status;
    var shownDone = statsCard.dataset.done;
    var svgEl = function (tag, attrs, text) {
      var node = document.createElementNS(SVG_NS, tag);
      Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
      if (text !== undefined) node.textContent = text;
      return node;
    };
    var drawChart = function (chart) {
      chartNode.setAttribute("viewBox", "0 0 " + chart.width + " " + chart.height);
      chartNode.setAttribute("height", chart.height);
      chartNode.setAttribute("aria-label", chart.label);
      var nodes = [svgEl("line", { "class": "axis", x1: chart.left, x2: chart.left, y1: 0, y2: chart.height })];
      chart.bars.forEach(function (b) {
        var mid = b.y + chart.bar_height / 2 + 4;
        nodes.push(svgEl("text", { "class": "tick bar-label", x: chart.left - 8, y: mid, "text-anchor": "end" }, b.label));
        nodes.push(svgEl("rect", { "class": "track", x: chart.left, y: b.y, width: chart.right - chart.left, height: chart.bar_height }));
        b.segments.forEach(function (s) {
          var rect = svgEl("rect", { "class": "seg seg-" + s.key, x: s.x, y: b.y, width: s.width, height: chart.bar_height });
          rect.appendChild(svgEl("title", {}, s.label));
          nodes.push(rect);
        });
        nodes.push(svgEl("text", { "class": "tick", x: chart.right + 6, y: mid }, String(b.total)));
      });
      if (!chart.bars.length) {
        nodes.push(svgEl("text", { "class": "tick", x: chart.left + 8, y: chart.height / 2 + 4 }, "No messages yet."));
      }
      chartNode.replaceChildren.apply(chartNode, nodes);
    };
    var drawTable = function (rows) {
      if (rows.length <= 1) return; // only the total: nothing in the outbox yet
      statsBody.replaceChildren.apply(statsBody, rows.map(function (c) {
        var tr = el("tr", c.channel === "total" ? "total" : null);
        tr.dataset.channel = c.channel;
        tr.appendChild(el("td", null, c.label));
        columns.concat(["total"]).forEach(function (k) {
          var td = el("td", null, String(c[k]));
          td.dataset.key = k;
          tr.appendChild(td);
        });
        return tr;
      }));
    };
    every(function () {
      return getJSON(statsCard.dataset.api).then(function (data) {
        if (!data) return;
        drawChart(data.chart);
        drawTable(data.channels);
        if (progress) progress.textContent = data.progress;
        if (pill) {
          pill.textContent = data.status;
          pill.className = "pill bc-" + data.status;
        }
        // Fanning out -> sent changes no button; finishing or stopping does.
        var moved = data.status !== shownStatus && !(shownStatus === "sending" && data.status === "sent");
        if (changedNote && (moved || String(data.done) !== shownDone)) changedNote.classList.remove("hidden");
      });
    });
  }
})();
