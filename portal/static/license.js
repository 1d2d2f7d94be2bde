// The license page's copy button for the token (manual chapter 9: the token is
// entered in ProMoS's license dialog). Without JavaScript the button stays
// hidden; the token is shown as text that one click selects (CSS user-select).
(function () {
  "use strict";
  var button = document.getElementById("copy-token");
  var token = document.getElementById("token");
  if (!button || !token) { return; }
  function select() {
    var range = document.createRange();
    range.selectNodeContents(token);
    var sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
  }
  button.hidden = false;
  button.addEventListener("click", function () {
    var text = token.textContent.trim();
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () {
        button.textContent = button.dataset.copied;
      }, select);
    } else {
      select();
    }
  });
})();

// The offline check page: a chosen request file fills the text field (without
// JavaScript the file chooser stays hidden and the content is pasted).
(function () {
  "use strict";
  var chooser = document.getElementById("offline-file");
  var field = document.getElementById("offline-request");
  if (!chooser || !field || !window.FileReader) { return; }
  chooser.hidden = false;
  chooser.addEventListener("change", function () {
    var file = chooser.files && chooser.files[0];
    if (!file) { return; }
    var reader = new FileReader();
    reader.onload = function () { field.value = String(reader.result); };
    reader.readAsText(file);
  });
})();
