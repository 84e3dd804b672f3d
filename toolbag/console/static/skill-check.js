// The skill editor's check as you type: a moment after the last key, the three files are sent to
// <base>/skills/<name>/problems and each file's problems (the lines of `toolbag skills validate`) are shown
// under it as text. Saving is still checked on the server.
(function () {
  "use strict";
  var form = document.getElementById("skill-form");
  if (!form || !window.fetch || !window.FormData) { return; }
  var url = form.getAttribute("data-problems");
  var timer = null;
  var sent = 0;
  function box(file) {
    var id = "problems-" + file.replace(/\./g, "-");
    var el = document.getElementById(id);
    if (!el) {
      var area = document.getElementById("file-" + file.replace(/\./g, "-"));
      el = document.createElement("div");
      el.id = id;
      el.className = "error";
      area.parentNode.appendChild(el);
    }
    return el;
  }
  function show(problems) {
    var total = 0;
    ["SKILL.md", "schema.json", "evals.yaml"].forEach(function (file) {
      var el = box(file);
      var lines = problems[file] || [];
      total += lines.length;
      el.textContent = "";
      lines.forEach(function (line) {
        var pre = document.createElement("pre");
        pre.className = "problem";
        pre.textContent = line;
        el.appendChild(pre);
      });
    });
    var status = document.getElementById("live-check");
    status.textContent = total ? total + " problem(s)" : "no problems";
    status.className = total ? "error" : "ok-text";
  }
  function check() {
    var mine = ++sent;
    fetch(url, {method: "POST", body: new FormData(form), credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) { if (data && mine === sent) { show(data.problems); } })
      .catch(function () {});
  }
  form.addEventListener("input", function () {
    window.clearTimeout(timer);
    timer = window.setTimeout(check, 600);
  });
})();
