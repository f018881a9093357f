// A person's own pictures: an upload or a camera frame, scaled down in a canvas to at
// most MAX_SIDE pixels a side (a small transfer) and handed to `classify` as RGBA. The
// worker turns them into the model's input by the model's one rule
// (strata.client.pictures.picture_input), so this file knows no model.

const $ = (id) => document.getElementById(id);
const MAX_SIDE = 512;  // pixels: enough for a 224 px model input cropped from a photo's centre
const FRAME_PERIOD_MS = 500;  // continuous camera mode: about two frames a second

function canvas(width, height) {
  const element = document.createElement("canvas");
  element.width = width;
  element.height = height;
  return [element, element.getContext("2d", { willReadFrequently: true })];
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

// The crop [x, y, w, h] of an image or video frame as RGBA pixels, aspect kept, at most
// MAX_SIDE pixels a side: { pixels (Uint8ClampedArray, row by row), width, height }.
export function pictureOf(source, crop) {
  const scale = Math.min(1, MAX_SIDE / Math.max(crop[2], crop[3]));
  const width = Math.max(1, Math.round(crop[2] * scale)), height = Math.max(1, Math.round(crop[3] * scale));
  const [, context] = canvas(width, height);
  drawScaled(context, source, crop, [0, 0, width, height]);
  return { pixels: context.getImageData(0, 0, width, height).data, width, height };
}

// Put RGBA pixels (rows x cols, row by row) on a canvas at their own size.
export function drawPicture(target, pixels, [rows, cols]) {
  target.width = cols;
  target.height = rows;
  target.getContext("2d").putImageData(new ImageData(new Uint8ClampedArray(pixels), cols, rows), 0, 0);
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

// Wire the upload and camera controls. `classify(picture, kind, options)` classifies one
// picture and shows the answer; it resolves with the worker's answer, whose `inverted`
// says what the worker chose when `options.invert` was null (decide by the border).
// `conversion`: the model's rule has the invert and contrast options (our Fashion-MNIST
// model's); other models take pictures as they are.
export function setUpInput({ classify, onError, conversion }) {
  let current = null;  // { picture, kind, invert }: the last picture, so a changed option can redo it
  let stream = null, timer = null, busy = false;

  async function run() {
    $("input-message").textContent = "";
    const options = conversion ? { invert: current.invert, contrast: $("contrast").checked } : {};
    const answer = await classify(current.picture, current.kind, options);
    if (conversion && answer.inverted != null) $("invert").checked = answer.inverted;
    return answer;
  }

  // A new picture: invert decided by its border (null) until the person says otherwise.
  function take(picture, kind) {
    const invert = current && current.kind === kind && kind === "camera" ? current.invert : null;
    current = { picture, kind, invert };
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
    take(pictureOf(bitmap, [0, 0, bitmap.width, bitmap.height]), "upload");
    bitmap.close();
    run().catch(onError);
  });
  $("invert").addEventListener("change", () => {
    if (!current) return;
    current.invert = $("invert").checked;  // the person's choice wins from now on
    if (current.kind === "upload") run().catch(onError);
  });
  $("contrast").addEventListener("change", () => { if (current && current.kind === "upload") run().catch(onError); });

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
    take(pictureOf(video, crop), "camera");
    busy = true;
    try { await run(); } catch (error) { onError(error); } finally { busy = false; }
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
