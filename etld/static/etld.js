// Small helpers shared by the pages: confirmation prompts and provider-specific fields.
(function () {
  "use strict";
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
    }
  }, true);

  // Integration form: show the fields of the chosen provider only.
  var form = document.querySelector("[data-provider-form]");
  if (form) {
    var picker = form.querySelector("[data-provider]");
    var sync = function () {
      var provider = picker.value;
      var known = provider === "jira" || provider === "github";
      form.querySelectorAll("[data-for]").forEach(function (field) {
        field.hidden = known && field.getAttribute("data-for") !== provider;
      });
    };
    picker.addEventListener("change", sync);
    sync();
  }
})();
