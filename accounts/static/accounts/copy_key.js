// "Copy" buttons on the key-shown-once page. The key stays in the page only; nothing is sent anywhere.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("button.hc-copy").forEach(function (button) {
        button.addEventListener("click", function () {
            var input = document.getElementById(button.dataset.target);
            var note = button.parentElement.querySelector(".hc-copied");
            function done(ok) { if (note) { note.textContent = ok ? "Copied." : "Select the key and copy it."; } }
            input.select();
            if (navigator.clipboard && window.isSecureContext) {
                navigator.clipboard.writeText(input.value).then(function () { done(true); }, function () { done(document.execCommand("copy")); });
            } else {
                done(document.execCommand("copy"));
            }
        });
    });
});
