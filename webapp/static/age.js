// How long ago each <time data-age> was, added after it ("2026-11-29 03:30 UTC (12 min ago)"), and which
// options' outbound flights have already left (a trip's page lasts through its departure day). The server
// writes only the times, so a page stored when it was rendered (webapp/pages.py) never shows a stale age or
// sells a flight that left after it; the wording matches webapp/formatting.age.
"use strict";
(function () {
  function age(seconds) {
    if (seconds < 60) { return "just now"; }
    if (seconds < 3600) { return Math.floor(seconds / 60) + " min ago"; }
    if (seconds < 2 * 86400) { return Math.floor(seconds / 3600) + " h ago"; }
    return Math.floor(seconds / 86400) + " days ago";
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("time[data-age]").forEach(function (element) {
      var seconds = Math.max(0, (Date.now() - Date.parse(element.getAttribute("datetime"))) / 1000);
      element.insertAdjacentText("afterend", " (" + age(seconds) + ")");
    });
    document.querySelectorAll("tr.option[data-departs]").forEach(function (row) {
      if (Date.parse(row.getAttribute("data-departs")) <= Date.now()) {
        row.classList.add("departed");
        row.querySelector("td.total").insertAdjacentText("beforeend", " (departed)");
      }
    });
  });
})();
