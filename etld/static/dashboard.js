// The jobs dashboard, live: the tenant's WebSocket feed sends a job's whole status JSON
// whenever it changes (job_status_update), and each card's step x stage grid follows it.
// Nothing polls; after a lost connection the feed is reopened and sends every job again.
(function () {
  "use strict";
  var STAGES = ["extraction", "transform", "embedding"];
  var cards = document.querySelector(".cards[data-tenant]");
  if (!cards) { return; }
  var tenant = cards.getAttribute("data-tenant");
  var live = document.querySelector("[data-live-state]");
  var csrf = document.querySelector('meta[name="csrf-token"]').getAttribute("content");
  var lastOverall = {};

  function setLive(text, state) {
    if (!live) { return; }
    live.textContent = text;
    live.className = "live " + state;
  }

  function when(iso) {
    if (!iso) { return ""; }
    var d = new Date(iso);
    return isNaN(d) ? iso : d.toISOString().slice(0, 16).replace("T", " ") + " UTC";
  }

  function cell(row, stage) {
    var td = row.querySelector('td[data-stage="' + stage + '"]');
    if (!td) {
      td = document.createElement("td");
      td.setAttribute("data-stage", stage);
      row.appendChild(td);
    }
    return td;
  }

  function drawGrid(card, steps) {
    var body = card.querySelector("[data-grid] tbody");
    var names = Object.keys(steps).sort(function (a, b) {
      return (steps[a].order || 0) - (steps[b].order || 0);
    });
    if (!names.length) { return; }
    Array.prototype.forEach.call(body.querySelectorAll("tr"), function (row) {
      var name = row.getAttribute("data-step");
      if (name === null || !(name in steps)) { row.remove(); }
    });
    names.forEach(function (name) {
      var step = steps[name];
      var row = Array.prototype.find.call(body.querySelectorAll("tr[data-step]"), function (r) {
        return r.getAttribute("data-step") === name;
      });
      if (!row) {
        row = document.createElement("tr");
        row.setAttribute("data-step", name);
        var head = document.createElement("th");
        head.scope = "row";
        head.textContent = step.display_name || name;
        row.appendChild(head);
      }
      body.appendChild(row); // keeps the rows in step order
      STAGES.forEach(function (stage) {
        var td = cell(row, stage);
        var state = String(step[stage] || "idle");
        if (td.textContent !== state) {
          td.textContent = state;
          td.className = "cell cell-" + state;
        }
      });
    });
  }

  function refreshFacts(card, jobId) {
    // One read when a run ends, for its last/next run lines (the feed carries status only).
    fetch("/app/etl/jobs/" + jobId, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (job) {
        if (!job) { return; }
        var last = card.querySelector("[data-last-run]");
        if (last && job.last_run) { last.textContent = job.last_run.outcome + " · " + when(job.last_run.started_at); }
        var next = card.querySelector("[data-next-run]");
        if (next) { next.textContent = job.next_run ? when(job.next_run) : (job.active ? "after the current cycle" : "paused"); }
      })
      .catch(function () { /* the grid is what matters; facts catch up on the next load */ });
  }

  function apply(jobId, status) {
    var card = cards.querySelector('.job[data-job="' + jobId + '"]');
    if (!card || !status) { return; }
    var overall = status.overall || "NOT_STARTED";
    var badge = card.querySelector("[data-overall]");
    badge.textContent = overall;
    badge.className = "badge overall overall-" + overall;
    drawGrid(card, status.steps || {});
    var before = lastOverall[jobId];
    lastOverall[jobId] = overall;
    if (before === "RUNNING" && overall !== "RUNNING") { refreshFacts(card, jobId); }
  }

  var delay = 1000;
  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + location.host + "/ws/tenant/" + tenant);
    socket.onopen = function () { delay = 1000; setLive("live", "on"); };
    socket.onmessage = function (event) {
      var message;
      try { message = JSON.parse(event.data); } catch (e) { return; }
      if (message.type === "job_status_update") { apply(message.job_id, message.status); }
    };
    socket.onclose = function () {
      setLive("reconnecting…", "off");
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
  }
  connect();

  function toast(kind, text) {
    var box = document.createElement("div");
    box.className = "flash toast " + kind;
    box.setAttribute("role", "status");
    box.textContent = text;
    document.body.appendChild(box);
    setTimeout(function () { box.remove(); }, 6000);
  }

  // "Run now" without leaving the page, so the grid can be watched as the run goes.
  cards.addEventListener("submit", function (event) {
    var form = event.target;
    var url = form.getAttribute("data-api-url");
    if (!url) { return; }
    event.preventDefault();
    var button = form.querySelector("button");
    button.disabled = true;
    fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: "{}"
    }).then(function (r) {
      return r.json().then(function (body) { return { status: r.status, body: body }; });
    }).then(function (answer) {
      if (answer.status === 202) {
        toast("ok", answer.body.outcome === "skipped"
          ? "Skipped: the integration is inactive."
          : "Started run " + answer.body.run_id + ".");
      } else {
        toast("error", (answer.body.error && answer.body.error.message) || "The job did not start.");
      }
    }).catch(function () {
      toast("error", "The server did not answer.");
    }).then(function () { button.disabled = false; });
  });
})();
