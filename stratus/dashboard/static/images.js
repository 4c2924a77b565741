// The image upload: create the image, then send the file as the raw body of one PUT to the
// dashboard (which streams it into the image API), showing the upload's progress.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("image-form");
  if (!form) return;
  const csrf = form.elements.namedItem("csrf_token").value;
  const progress = document.getElementById("upload-progress");
  const percent = document.getElementById("upload-percent");
  const error = document.getElementById("image-error");
  const done = document.getElementById("upload-done");
  const button = form.querySelector("button[type=submit]");

  const setProgress = (fraction) => {
    const value = Math.round(100 * fraction);
    progress.value = value;
    percent.textContent = value + "%";
  };
  const fail = (message, field) => {
    for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
    error.textContent = message || "The upload failed.";
    error.hidden = false;
    if (field && form.elements.namedItem(field)) {
      form.elements.namedItem(field).setAttribute("aria-invalid", "true");
    }
    button.disabled = false;
  };
  const message = async (answer) => {
    try { return await answer.json(); } catch (e) { return { error: "The dashboard answered " + answer.status + "." }; }
  };

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    done.hidden = true;
    const file = form.elements.namedItem("file").files[0];
    if (!file) { fail("Choose a file to upload.", "file"); return; }
    button.disabled = true;
    setProgress(0);
    let created;
    try {
      const answer = await fetch(form.action, {
        method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": csrf },
        body: new URLSearchParams({ name: form.elements.namedItem("name").value,
                                    disk_format: form.elements.namedItem("disk_format").value }),
      });
      created = await message(answer);
      if (!answer.ok) { fail(created.error, created.field); return; }
    } catch (e) {
      fail("The dashboard could not be reached.");
      return;
    }
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", created.upload);
    xhr.setRequestHeader("X-CSRF-Token", csrf);
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.upload.addEventListener("progress", (e) => { if (e.lengthComputable) setProgress(e.loaded / e.total); });
    xhr.addEventListener("load", () => {
      if (xhr.status === 204) {
        setProgress(1);
        done.hidden = false;
        button.disabled = false;
        return;
      }
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch (e) { body = { error: "The dashboard answered " + xhr.status + "." }; }
      fail(body.error);
    });
    xhr.addEventListener("error", () => fail("The upload was interrupted."));
    xhr.send(file);
  });
});
