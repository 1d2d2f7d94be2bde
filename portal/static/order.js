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

  // A row's own error at once, next to it (the row stays, the message shows).
  function showError(field, message) {
    var row = document.getElementById("row-err-" + field);
    var p = document.getElementById("err-" + field);
    var input = document.getElementById("f-" + field);
    if (p) { p.textContent = message ? (p.dataset.name || "") + ": " + message : ""; }
    if (row) { row.hidden = !message; }
    if (input) {
      if (message) { input.setAttribute("aria-invalid", "true"); }
      else { input.removeAttribute("aria-invalid"); }
    }
  }

  // /api/price answers every valid row's price (`rows`) and the total of the
  // valid rows (`partial_total`) also when a field is invalid (status 422).
  function update() {
    var mine = ++seq;
    fetch("/api/price?" + params().toString(), { credentials: "same-origin" })
      .then(function (r) {
        var json = (r.headers.get("content-type") || "").indexOf("application/json") === 0;
        return (r.ok || r.status === 422) && json ? r.json() : null;
      })
      .then(function (data) {
        if (!data || mine !== seq) { return; }
        var errors = data.errors || {};
        var rows = data.rows || {};
        var invalid = Object.keys(errors).some(function (f) {
          return /^(driver_|malm_)/.test(f) ||
            ["protection", "ge_users", "pwa_users", "mystrom", "philips_hue"].indexOf(f) >= 0;
        });
        var total = invalid ? data.partial_total : (data.net || data.partial_total);
        setText("total", total || "–");
        var note = document.getElementById("total-partial");
        if (note) { note.hidden = !(invalid && data.partial_total); }
        Object.keys(data.drivers || {}).forEach(function (key) {
          var field = "driver_" + key;
          var d = data.drivers[key];
          var price = errors[field] ? "–" : (rows[field] || d.price || "–");
          setText("price-" + key, price);
          fillComposition(key, errors[field] ? { composition: [], total: ["", "–"] } : d);
          showError(field, errors[field] || "");
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
