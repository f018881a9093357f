// Demo mode (`strata serve --emulate wifi`): a person switches the emulated link between
// this page and the edge, and the selector shows the profile the emulator reports, read
// back every LINK_POLL_MS. Going offline, the edge replies first and cuts the link a
// moment later (edge_server/edge/demo_link.py); until the link is back the page says it
// cannot reach the edge.

const $ = (id) => document.getElementById(id);
const LINK_POLL_MS = 2000;
let linkHeld = 0;  // until then (performance.now()), a switch is under way: the poll leaves the selector alone

// Show a profile in the selector, adding it if the emulator was set to one it lacks.
function selectProfile(name) {
  const select = $("demo-link");
  if (![...select.options].some((option) => option.value === name)) select.add(new Option(name));
  select.value = name;
}

async function readLink() {
  return (await fetch("/demo/link", { cache: "no-store", signal: AbortSignal.timeout(LINK_POLL_MS) })).json();
}

// The selector shows the profile the emulator reports; when the page cannot reach the
// edge (the link is offline), it says so and waits for the link to come back.
async function pollLink() {
  const note = $("demo-note");
  try {
    const link = await readLink();
    if (performance.now() < linkHeld) return;
    selectProfile(link.name);
    $("demo-link").dataset.profile = link.name;
    note.textContent = "";
  } catch {
    if (performance.now() < linkHeld) return;
    $("demo-link").value = "offline";
    $("demo-link").dataset.profile = "unreachable";
    note.textContent = "The page cannot reach the edge through the emulated link: it is offline, or the edge is down.";
  }
}

async function switchLink() {
  const note = $("demo-note");
  const name = $("demo-link").value;
  linkHeld = performance.now() + 5000;
  try {
    const response = await fetch(`/demo/link/${name}`, { method: "PUT", signal: AbortSignal.timeout(5000) });
    const reply = await response.json();
    if (!response.ok) throw new Error(reply.error || `HTTP ${response.status}`);
    if (reply.back_to) {
      linkHeld = performance.now() + 1000 * reply.in_s;  // the switch comes after the reply has crossed the link
      note.textContent = `offline in ${reply.in_s} s, back to ${reply.back_to} ${reply.after_s} s later`;
      return;
    }
    linkHeld = 0;
  } catch (error) {
    linkHeld = 0;
    note.textContent = `Could not switch the link to ${name}: ${error.message}.`;
    return;
  }
  pollLink();
}

export async function setUpDemo() {
  const link = await readLink();
  if (!link.enabled) return;
  $("demo").hidden = false;
  selectProfile(link.name);
  $("demo-link").dataset.profile = link.name;
  $("demo-link").addEventListener("change", switchLink);
  setInterval(pollLink, LINK_POLL_MS);
}
