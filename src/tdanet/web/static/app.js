// The single page: upload a recording, show progress, play and download each separated speaker.
"use strict";

(function () {
  const fileInput = document.getElementById("file-input");
  const dropzone = document.getElementById("dropzone");
  const progressBox = document.getElementById("progress-box");
  const progress = document.getElementById("progress");
  const statusLine = document.getElementById("status");
  const errorBox = document.getElementById("error");
  const results = document.getElementById("results");
  const summary = document.getElementById("summary");
  const modelInfo = document.getElementById("model-info");
  const limitsLine = document.getElementById("limits");

  let limits = null;
  let objectUrls = [];
  let busy = false;

  function formatBytes(bytes) {
    if (bytes >= 1024 * 1024) return (bytes / (1024 * 1024)).toFixed(1) + " MB";
    if (bytes >= 1024) return (bytes / 1024).toFixed(1) + " kB";
    return bytes + " bytes";
  }

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = false;
  }

  function setStatus(text, percent) {
    progressBox.hidden = false;
    statusLine.textContent = text;
    // No value attribute: the bar shows indeterminate activity.
    if (percent === null) progress.removeAttribute("value");
    else progress.value = percent;
  }

  function loadInfo() {
    fetch("/api/info")
      .then((response) => response.json())
      .then((info) => {
        limits = info.limits;
        modelInfo.textContent =
          "Model " + info.model + ": " + info.num_sources + " speakers, works at " +
          info.sample_rate + " Hz.";
        limitsLine.textContent =
          "Any format libsndfile reads (WAV, FLAC, OGG, MP3, AIFF, …), up to " +
          formatBytes(limits.max_upload_bytes) + " and " + limits.max_duration_s + " s.";
      })
      .catch(() => {
        modelInfo.textContent = "Could not reach the server.";
      });
  }

  // Base64 text -> bytes.
  function decodeBase64(text) {
    const binary = atob(text);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  }

  // The samples of a 16-bit PCM mono WAV as a DataView over its data chunk.
  function wavSamples(bytes) {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    let offset = 12; // after "RIFF", size, "WAVE"
    while (offset + 8 <= view.byteLength) {
      const id = String.fromCharCode(
        view.getUint8(offset), view.getUint8(offset + 1),
        view.getUint8(offset + 2), view.getUint8(offset + 3));
      const size = view.getUint32(offset + 4, true);
      if (id === "data") {
        const length = Math.min(size, view.byteLength - offset - 8);
        return new DataView(bytes.buffer, bytes.byteOffset + offset + 8, length);
      }
      offset += 8 + size + (size % 2); // chunks are padded to an even size
    }
    return new DataView(new ArrayBuffer(0));
  }

  // Draw min/max of the samples in each pixel column of the canvas.
  function drawWaveform(canvas, samples) {
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.floor(canvas.clientWidth * ratio));
    const height = Math.max(1, Math.floor(canvas.clientHeight * ratio));
    canvas.width = width;
    canvas.height = height;
    const context = canvas.getContext("2d");
    context.clearRect(0, 0, width, height);
    const style = getComputedStyle(document.documentElement);
    context.fillStyle = style.getPropertyValue("--wave").trim() || "#2563eb";
    const count = Math.floor(samples.byteLength / 2);
    const middle = height / 2;
    if (count === 0) {
      context.fillRect(0, middle, width, 1);
      return;
    }
    const perColumn = count / width;
    for (let x = 0; x < width; x++) {
      const start = Math.floor(x * perColumn);
      const end = Math.max(start + 1, Math.min(count, Math.floor((x + 1) * perColumn)));
      let low = 0;
      let high = 0;
      for (let i = start; i < end; i++) {
        const value = samples.getInt16(i * 2, true) / 32768;
        if (value < low) low = value;
        if (value > high) high = value;
      }
      const top = middle - high * middle;
      const bottom = middle - low * middle;
      context.fillRect(x, top, 1, Math.max(1, bottom - top));
    }
  }

  function fileStem(name) {
    const stem = name.replace(/\.[^.]*$/, "").replace(/[^\w.-]+/g, "_");
    return stem || "recording";
  }

  function addTrack(track, label, stem, isMixture) {
    const bytes = decodeBase64(track.wav_base64);
    const url = URL.createObjectURL(new Blob([bytes], { type: "audio/wav" }));
    objectUrls.push(url);

    const section = document.createElement("section");
    section.className = isMixture ? "track mixture" : "track";
    section.dataset.track = track.name;

    const heading = document.createElement("h2");
    heading.textContent = label;
    const canvas = document.createElement("canvas");
    canvas.setAttribute("aria-label", "Waveform of " + label);
    const audio = document.createElement("audio");
    audio.controls = true;
    audio.preload = "metadata";
    audio.src = url;
    const link = document.createElement("a");
    link.href = url;
    link.download = stem + "-" + track.name + ".wav";
    link.textContent = "Download " + label.toLowerCase() + " (WAV)";

    section.append(heading, canvas, audio, link);
    results.append(section);
    drawWaveform(canvas, wavSamples(bytes));
  }

  function showResults(data, fileName) {
    const stem = fileStem(fileName);
    if (data.mixture) addTrack(data.mixture, "Mixture", stem, true);
    data.sources.forEach((source, index) => {
      addTrack(source, "Speaker " + (index + 1), stem, false);
    });
    progressBox.hidden = true;
    summary.textContent =
      data.input.filename + ": " + data.duration_s.toFixed(1) + " s separated into " +
      data.num_sources + " speakers in " + data.processing_s.toFixed(1) + " s.";
    summary.hidden = false;
  }

  function clearResults() {
    objectUrls.forEach((url) => URL.revokeObjectURL(url));
    objectUrls = [];
    results.replaceChildren();
    errorBox.hidden = true;
    summary.hidden = true;
  }

  function errorMessage(xhr) {
    try {
      const body = JSON.parse(xhr.responseText);
      if (body && body.detail) return body.detail;
    } catch (ignored) {
      // Not JSON (e.g. a proxy's page): fall back to the status line.
    }
    return "The server answered " + xhr.status + " " + xhr.statusText + ".";
  }

  function separate(file) {
    if (busy) return;
    clearResults();
    if (limits && file.size > limits.max_upload_bytes) {
      showError(file.name + " is " + formatBytes(file.size) + "; the limit is " +
        formatBytes(limits.max_upload_bytes) + ".");
      return;
    }
    busy = true;
    fileInput.disabled = true;
    dropzone.setAttribute("aria-busy", "true");
    const form = new FormData();
    form.append("file", file);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/separate?mixture=true");
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) {
        setStatus("Uploading " + file.name + "…", (100 * event.loaded) / event.total);
      }
    });
    xhr.upload.addEventListener("load", () => setStatus("Separating…", null));
    xhr.addEventListener("load", () => {
      if (xhr.status === 200) {
        try {
          showResults(JSON.parse(xhr.responseText), file.name);
        } catch (error) {
          progressBox.hidden = true;
          showError("Could not read the server's answer: " + error.message);
        }
      } else {
        progressBox.hidden = true;
        showError(errorMessage(xhr));
      }
    });
    xhr.addEventListener("error", () => {
      progressBox.hidden = true;
      showError("The upload failed: the server could not be reached.");
    });
    xhr.addEventListener("loadend", () => {
      busy = false;
      fileInput.disabled = false;
      dropzone.removeAttribute("aria-busy");
      fileInput.value = "";
    });
    setStatus("Uploading " + file.name + "…", 0);
    xhr.send(form);
  }

  fileInput.addEventListener("change", () => {
    if (fileInput.files.length > 0) separate(fileInput.files[0]);
  });

  dropzone.addEventListener("dragover", (event) => {
    event.preventDefault();
    dropzone.classList.add("dragging");
  });
  dropzone.addEventListener("dragleave", () => dropzone.classList.remove("dragging"));
  dropzone.addEventListener("drop", (event) => {
    event.preventDefault();
    dropzone.classList.remove("dragging");
    const files = event.dataTransfer.files;
    if (files.length > 0) separate(files[0]);
  });

  loadInfo();
})();
