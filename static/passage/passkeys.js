// After a passkey is added, go on to where the page's "passkey-done" form points (the
// backup codes after a first enrolment, the second-factor page otherwise).
document.addEventListener("otp_webauthn.register_complete", function () {
  var done = document.getElementById("passkey-done");
  if (done) {
    done.submit();
  } else {
    window.location.reload();
  }
});
