// Airport suggestions for the search form: as the traveller types a code or a city, ask /api/airports
// and offer the matches in the field's <datalist>. The form works without it (codes and unique cities).
"use strict";
(function () {
  function attach(input) {
    var list = document.getElementById(input.getAttribute("list"));
    var pending = null;
    input.addEventListener("input", function () {
      var text = input.value.trim();
      if (pending) { clearTimeout(pending); }
      if (text.length < 2) { return; }
      pending = setTimeout(function () {
        fetch(input.dataset.suggest + "?q=" + encodeURIComponent(text), { headers: { Accept: "application/json" } })
          .then(function (response) { return response.ok ? response.json() : { airports: [] }; })
          .then(function (body) {
            list.replaceChildren.apply(list, body.airports.map(function (airport) {
              var option = document.createElement("option");
              option.value = airport.code;
              option.label = airport.name + ", " + airport.city + " (" + airport.country + ")";
              return option;
            }));
          })
          .catch(function () { /* Suggestions are a convenience; typing a code still works offline. */ });
      }, 150);
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("input[data-suggest]").forEach(attach);
  });
})();
