// Follows a run's live log (server-sent events from /runs/<id>/log) into <pre id="log">.
// Each event's data is HTML the server made (ANSI colours as spans, everything else
// escaped), one line per event. The server ends the stream with an "end" event.
(function () {
  "use strict";
  function start() {
    var log = document.getElementById("log");
    if (!log || !log.dataset.stream) return;
    var source = new EventSource(log.dataset.stream);
    source.onopen = function () { log.dataset.state = "following"; };
    source.addEventListener("line", function (e) {
      var atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
      var line = document.createElement("div");
      line.className = "line";
      line.innerHTML = e.data;
      log.appendChild(line);
      log.dataset.lines = String(log.childElementCount);
      if (atBottom) log.scrollTop = log.scrollHeight;
    });
    source.addEventListener("end", function (e) {
      source.close();
      log.dataset.state = "ended";
      log.dataset.final = e.data;
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
