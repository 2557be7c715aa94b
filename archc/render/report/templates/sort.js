// Progressive enhancement only: every table is complete without this script. Click a header of a sortable table
// to sort by that column (numbers by their data-v value, else text); type in a filter box to hide other rows.
(function () {
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var body = table.tBodies[0];
    table.querySelectorAll("thead th").forEach(function (th, col) {
      th.classList.add("sorter");
      th.addEventListener("click", function () {
        var dir = th.getAttribute("data-dir") === "asc" ? -1 : 1;
        th.setAttribute("data-dir", dir === 1 ? "asc" : "desc");
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = a.cells[col], y = b.cells[col];
          var u = x && x.getAttribute("data-v"), v = y && y.getAttribute("data-v");
          if (u !== null && v !== null && u !== "" && v !== "") return dir * (parseFloat(u) - parseFloat(v));
          return dir * (x ? x.textContent : "").localeCompare(y ? y.textContent : "");
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
    if (table.classList.contains("filterable")) {
      var box = document.createElement("input");
      box.type = "search";
      box.placeholder = "filter rows";
      box.className = "filter";
      box.addEventListener("input", function () {
        var q = box.value.toLowerCase();
        Array.prototype.forEach.call(body.rows, function (r) {
          r.hidden = q !== "" && r.textContent.toLowerCase().indexOf(q) < 0;
        });
      });
      table.parentNode.parentNode.insertBefore(box, table.parentNode);
    }
  });
})();
