// A person's own images: an upload or a camera frame, turned into what the model takes
// (the raw size from models/manifest.json, greyscale 0..255, a light object on a dark
// background as in Fashion-MNIST) on small canvases, then handed to `classify`.

const $ = (id) => document.getElementById(id);
const LUMA = [0.299, 0.587, 0.114];
const FRAME_PERIOD_MS = 500;  // continuous camera mode: about two frames a second

function canvas(width, height) {
  const element = document.createElement("canvas");
  element.width = width;
  element.height = height;
  return [element, element.getContext("2d", { willReadFrequently: true })];
}

function grey(rgba) {
  const out = new Float32Array(rgba.length / 4);
  for (let p = 0; p < out.length; p++) {
    out[p] = LUMA[0] * rgba[4 * p] + LUMA[1] * rgba[4 * p + 1] + LUMA[2] * rgba[4 * p + 2];
  }
  return out;
}

// Draw a crop of `source` into a w x h box, halving first so a large photo is averaged
// rather than sampled.
function drawScaled(context, source, [sx, sy, sw, sh], [dx, dy, dw, dh]) {
  let from = source, crop = [sx, sy, sw, sh];
  while (crop[2] > 2 * dw && crop[3] > 2 * dh) {
    const [step, stepContext] = canvas(Math.ceil(crop[2] / 2), Math.ceil(crop[3] / 2));
    stepContext.drawImage(from, ...crop, 0, 0, step.width, step.height);
    from = step;
    crop = [0, 0, step.width, step.height];
  }
  context.imageSmoothingQuality = "high";
  context.drawImage(from, ...crop, dx, dy, dw, dh);
}

// The mean grey of the crop's outer ring, seen on white (transparent pixels show the page).
export function borderGrey(source, crop) {
  const n = 32;
  const [, context] = canvas(n, n);
  context.fillStyle = "#fff";
  context.fillRect(0, 0, n, n);
  drawScaled(context, source, crop, [0, 0, n, n]);
  const values = grey(context.getImageData(0, 0, n, n).data);
  let sum = 0, count = 0;
  for (let r = 0; r < n; r++) {
    for (let c = 0; c < n; c++) {
      if (r < 2 || c < 2 || r >= n - 2 || c >= n - 2) { sum += values[r * n + c]; count++; }
    }
  }
  return sum / count;
}

// The model's input: the crop fitted (aspect kept) into size x size, padded with the
// border's grey, greyscale, optionally inverted and contrast-stretched; uint8 row by row.
export function toModelPixels(source, crop, [rows, cols], { invert, contrast, background }) {
  const [, context] = canvas(cols, rows);
  const scale = Math.min(cols / crop[2], rows / crop[3]);  // whole pixels, so no seam at the padding
  const w = Math.max(1, Math.round(crop[2] * scale)), h = Math.max(1, Math.round(crop[3] * scale));
  const x = Math.floor((cols - w) / 2), y = Math.floor((rows - h) / 2);
  context.fillStyle = `rgb(${background}, ${background}, ${background})`;
  context.fillRect(0, 0, cols, rows);
  context.fillStyle = "#fff";
  context.fillRect(x, y, w, h);
  drawScaled(context, source, crop, [x, y, w, h]);
  const values = grey(context.getImageData(0, 0, cols, rows).data);
  if (invert) values.forEach((v, i) => { values[i] = 255 - v; });
  let lo = 0, hi = 255;
  if (contrast) {
    lo = Math.min(...values); hi = Math.max(...values);
    if (hi - lo < 16) { lo = 0; hi = 255; }  // a flat image: stretching would only show noise
  }
  return Uint8Array.from(values, (v) => Math.round((255 * (v - lo)) / (hi - lo)));
}

export function drawPixels(target, pixels, [rows, cols]) {
  target.width = cols;
  target.height = rows;
  const context = target.getContext("2d");
  const image = context.createImageData(cols, rows);
  pixels.forEach((v, p) => image.data.set([v, v, v, 255], 4 * p));
  context.putImageData(image, 0, 0);
}

function cameraUnavailableReason() {
  if (navigator.mediaDevices && navigator.mediaDevices.getUserMedia) return null;
  return window.isSecureContext ? "This browser has no camera API (navigator.mediaDevices)."
    : "The camera needs a secure page: open it over HTTPS or on localhost.";
}

function cameraError(error) {
  if (error.name === "NotAllowedError" || error.name === "SecurityError") {
    return "Camera permission was denied. Allow the camera in the browser's site settings, or upload an image.";
  }
  if (error.name === "NotFoundError" || error.name === "OverconstrainedError") return "No camera was found on this device.";
  if (error.name === "NotReadableError") return "The camera is in use by another application.";
  return `The camera could not start (${error.name || "error"}: ${error.message}).`;
}

// Wire the upload and camera controls. `classify(pixels, source)` classifies one model
// input and shows it; `size` is [rows, cols], the manifest's input.raw_size.
export function setUpInput({ size, classify, showPixels, onError }) {
  let current = null;  // { source, crop, kind }: the last image, so a changed option can redo it
  let stream = null, timer = null, busy = false;
  const options = () => ({ invert: $("invert").checked, contrast: $("contrast").checked });

  async function run(kind) {
    const { source, crop, background } = current;
    const pixels = toModelPixels(source, crop, size, { ...options(), background });
    $("input-message").textContent = "";
    showPixels(pixels, kind === "camera" ? "the camera's centre square" : "your upload");
    return classify(pixels, kind);
  }

  function take(source, crop, kind) {
    const background = borderGrey(source, crop);
    $("invert").checked = background > 127;  // a dark object on a light page, as photos usually are
    current = { source, crop, background, kind };
  }

  $("upload").disabled = false;
  $("upload").addEventListener("change", async () => {
    const [file] = $("upload").files;
    if (!file) return;
    $("input-message").textContent = "";
    let bitmap;
    try {
      bitmap = await createImageBitmap(file);
    } catch {
      $("input-message").textContent = `${file.name} is not an image this browser can read.`;
      return;
    }
    take(bitmap, [0, 0, bitmap.width, bitmap.height], "upload");
    run("upload").catch(onError);
  });
  for (const id of ["invert", "contrast"]) {
    $(id).addEventListener("change", () => { if (current && current.kind === "upload") run("upload").catch(onError); });
  }

  const button = $("camera");
  const unavailable = cameraUnavailableReason();
  if (unavailable) {
    button.title = unavailable;
    $("camera-message").textContent = unavailable;
    return;
  }
  button.disabled = false;

  async function frame() {
    const video = $("camera-video");
    if (!stream || busy || video.readyState < 2 || !video.videoWidth) return;
    const side = Math.min(video.videoWidth, video.videoHeight);
    const crop = [(video.videoWidth - side) / 2, (video.videoHeight - side) / 2, side, side];
    if (!current || current.kind !== "camera") take(video, crop, "camera");
    else current.crop = crop;
    busy = true;
    try { await run("camera"); } catch (error) { onError(error); } finally { busy = false; }
  }

  // Outline the centre square that frame() classifies on the video preview.
  function markSquare() {
    const video = $("camera-video");
    if (!video.videoWidth) return;
    const side = Math.min(video.videoWidth, video.videoHeight);
    $("camera-view").style.setProperty("--square-width", `${(100 * side) / video.videoWidth}%`);
    $("camera-view").style.setProperty("--square-height", `${(100 * side) / video.videoHeight}%`);
  }

  function loop() {
    clearTimeout(timer);
    if (!stream || !$("camera-continuous").checked) return;
    frame().finally(() => { timer = setTimeout(loop, FRAME_PERIOD_MS); });
  }

  function stop() {
    clearTimeout(timer);
    stream.getTracks().forEach((track) => track.stop());
    stream = null;
    if (current && current.kind === "camera") current = null;
    $("camera-video").srcObject = null;
    $("camera-view").hidden = true;
    $("camera-frame").disabled = $("camera-continuous").disabled = true;
    $("camera-continuous").checked = false;
    button.textContent = "Start the camera";
    $("camera-message").textContent = "Camera stopped.";
  }

  button.addEventListener("click", async () => {
    if (stream) { stop(); return; }
    button.disabled = true;
    $("camera-message").textContent = "Asking for the camera…";
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false });
    } catch (error) {
      $("camera-message").textContent = cameraError(error);
      $("camera-message").dataset.error = error.name || "error";
      button.disabled = false;
      return;
    }
    const video = $("camera-video");
    video.srcObject = stream;
    $("camera-view").hidden = false;
    try { await video.play(); } catch { /* autoplay of a muted stream is allowed; frames come anyway */ }
    markSquare();
    current = null;
    delete $("camera-message").dataset.error;
    $("camera-message").textContent = "Camera on: the centre square of the frame is classified.";
    $("camera-frame").disabled = $("camera-continuous").disabled = false;
    button.textContent = "Stop the camera";
    button.disabled = false;
  });
  $("camera-video").addEventListener("resize", markSquare);
  $("camera-frame").addEventListener("click", frame);
  $("camera-continuous").addEventListener("change", loop);
}
