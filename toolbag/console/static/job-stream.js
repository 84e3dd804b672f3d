// The job page's live text: server-sent events from <base>/jobs/<id>/stream, shown as plain text (never
// markup). A failed attempt's text is struck through: the next attempt starts again. When the job is done
// the page reloads to show its result and timeline.
(function () {
  "use strict";
  var box = document.getElementById("live");
  if (!box || !window.EventSource) { return; }
  var current = null;
  var source = new EventSource(box.getAttribute("data-src"));
  box.hidden = false;
  source.addEventListener("delta", function (e) {
    var d = JSON.parse(e.data);
    if (!current) {
      current = document.createElement("span");
      current.className = "attempt-text";
      current.title = "attempt " + d.attempt + " on " + d.model;
      box.appendChild(current);
    }
    current.appendChild(document.createTextNode(d.text));
  });
  source.addEventListener("end", function (e) {
    var d = JSON.parse(e.data);
    if (current && !d.ok) {
      current.className = "attempt-text dropped";
      box.appendChild(document.createTextNode("\n[attempt " + d.attempt + " on " + d.model + " ended " +
                                              d.outcome + "]\n"));
    }
    current = null;
  });
  source.addEventListener("done", function () {
    source.close();
    window.location.reload();
  });
  source.onerror = function () {
    source.close();
    window.setTimeout(function () { window.location.reload(); }, 2000);
  };
})();
