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
