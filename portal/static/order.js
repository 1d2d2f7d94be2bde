// The order form's live total (manual 4.1: "the price is automatically
// displayed"). Asks /api/price, the same computation as "Next", while the
// customer types. The form works without this script.
(function () {
  "use strict";
  var form = document.getElementById("order-form");
  if (!form) { return; }
  var timer = null;
  var seq = 0;

  function params() {
    var p = new URLSearchParams();
    new FormData(form).forEach(function (value, key) {
      if (key !== "csrf" && key !== "step") { p.append(key, value); }
    });
    if (form.dataset.license) { p.set("license", form.dataset.license); }
    else { p.set("kind", form.dataset.kind || "standard"); }
    return p;
  }

  function setText(id, text) {
    var el = document.getElementById(id);
    if (el) { el.textContent = text; }
  }

  function fillComposition(key, d) {
    var body = document.getElementById("comp-" + key);
    if (!body) { return; }
    while (body.firstChild) { body.removeChild(body.firstChild); }
    var rows = (d.composition || []).concat([d.total]);
    rows.forEach(function (r, i) {
      var tr = document.createElement("tr");
      if (i === rows.length - 1) { tr.className = "sum"; }
      r.forEach(function (cell) {
        var td = document.createElement("td");
        td.textContent = cell;
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
  }

  function update() {
    var mine = ++seq;
    fetch("/api/price?" + params().toString(), { credentials: "same-origin" })
      .then(function (r) { return (r.ok || r.status === 422) ? r.json() : null; })
      .then(function (data) {
        if (!data || mine !== seq) { return; }
        setText("total", data.net || "–");
        Object.keys(data.drivers || {}).forEach(function (key) {
          var d = data.drivers[key];
          var errors = data.errors || {};
          setText("price-" + key, errors["driver_" + key] ? "–" : d.price);
          fillComposition(key, d);
          var input = document.getElementById("f-driver_" + key);
          if (input) {
            if (errors["driver_" + key]) {
              input.setAttribute("aria-invalid", "true");
              input.title = errors["driver_" + key];
            } else {
              input.removeAttribute("aria-invalid");
              input.removeAttribute("title");
            }
          }
        });
      })
      .catch(function () { /* offline: "Next" still prices on the server */ });
  }

  function schedule() {
    if (timer) { clearTimeout(timer); }
    timer = setTimeout(update, 150);
  }

  form.addEventListener("input", schedule);
  form.addEventListener("change", schedule);
  // Already-licensed options of an upgrade cannot be removed.
  Array.prototype.forEach.call(form.querySelectorAll("input.locked"), function (box) {
    box.addEventListener("click", function (e) { e.preventDefault(); });
  });
})();
