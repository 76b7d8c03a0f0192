(function () {
  "use strict";
  var grid = document.getElementById("units");
  var cards = Array.prototype.slice.call(grid.children);  // channel order, as written
  var buttons = Array.prototype.slice.call(document.querySelectorAll("#controls button[data-sort]"));
  var concept = document.getElementById("concept"), topClass = document.getElementById("top_class");
  var shown = document.getElementById("shown");
  function value(card, key) {
    var v = card.getAttribute("data-" + key);
    return v === null || v === "" ? null : parseFloat(v);
  }
  function sortBy(key) {
    var order = cards.slice();
    if (key !== "unit") {
      order.sort(function (a, b) {  // stable: ties keep channel order
        var x = value(a, key), y = value(b, key);
        if (x === null || y === null) { return (x === null) - (y === null); }
        return y - x;
      });
    }
    order.forEach(function (card) { grid.appendChild(card); });
    buttons.forEach(function (b) { b.setAttribute("aria-pressed", String(b.getAttribute("data-sort") === key)); });
  }
  function matches(wanted, have) {
    return wanted === "*" || (wanted === "-" ? have === "" : have === wanted.slice(1));
  }
  function filter() {
    var n = 0;
    cards.forEach(function (card) {
      var keep = matches(concept.value, card.getAttribute("data-concept")) &&
                 matches(topClass.value, card.getAttribute("data-top_class"));
      card.hidden = !keep;
      n += keep ? 1 : 0;
    });
    shown.textContent = n + " of " + cards.length + " units";
  }
  buttons.forEach(function (b) { b.addEventListener("click", function () { sortBy(b.getAttribute("data-sort")); }); });
  concept.addEventListener("change", filter);
  topClass.addEventListener("change", filter);
  document.getElementById("controls").hidden = false;
  filter();
}());
