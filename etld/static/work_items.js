// Semantic search on the work items page: asks GET /app/etl/search and lists the results,
// or says the feature is off when the endpoint does not answer 200.
(function () {
  "use strict";
  var form = document.getElementById("semantic-search");
  var out = document.getElementById("semantic-results");
  if (!form || !out) { return; }

  function line(text, className) {
    var p = document.createElement("p");
    p.textContent = text;
    if (className) { p.className = className; }
    return p;
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var q = form.elements.q.value.trim();
    if (!q) { return; }
    out.replaceChildren(line("Searching…", "muted"));
    fetch("/app/etl/search?limit=10&q=" + encodeURIComponent(q), { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .catch(function () { return null; })
      .then(function (body) {
        if (!body || !Array.isArray(body.results)) {
          out.replaceChildren(line("Semantic search is not enabled.", "flash info"));
          return;
        }
        if (!body.results.length) {
          out.replaceChildren(line("Nothing close in meaning was found.", "muted"));
          return;
        }
        var list = document.createElement("ol");
        list.className = "results";
        body.results.forEach(function (hit) {
          var item = document.createElement("li");
          var link = document.createElement("a");
          link.textContent = (hit.key || hit.external_id) + (hit.title ? " · " + hit.title : "");
          if (hit.table === "work_items") {
            link.href = "/work-items/" + hit.record_id;
          } else if (hit.url && /^https?:\/\//i.test(hit.url)) {
            link.href = hit.url;
            link.rel = "noopener noreferrer";
          }
          item.appendChild(link);
          var meta = document.createElement("span");
          meta.className = "muted small";
          meta.textContent = "  " + (hit.type || hit.source_type || "") + " · score " + hit.score;
          item.appendChild(meta);
          list.appendChild(item);
        });
        out.replaceChildren(list);
      });
  });
})();
