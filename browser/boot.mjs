// Starts Pyodide for Strata, in the browser's worker (worker.js) and under Node at
// provision time (edge_server/provision/snapshot.mjs), the same way in both.
//
// numpy's extension modules are not loaded by pyodide.loadPackage (which compiles every
// one of its 19 on each load, and records JS state a snapshot cannot hold). Instead the
// caller compiles the few the interpreter imports (WebAssembly.compileStreaming in the
// browser, so its code cache applies) and they are instantiated before the interpreter
// starts, the way Emscripten loads a program's own shared libraries: their memory comes
// from the top of the static data and their functions take the next slots of the table,
// so both land at the same addresses on every start. That is what lets a memory snapshot
// of an interpreter that has imported numpy and strata (takeSnapshot) be restored later
// (startPython with `snapshot`): the restored memory still points at the right functions.
// The approach follows Cloudflare's workerd, which preloads Pyodide's libraries alike.

export const SITE_PACKAGES = "/lib/python3.12/site-packages";

// Objects of Pyodide's own API that its Python modules hold (pyodide.http keeps
// abortSignalAny, for one); a snapshot names them by key, since globalThis does not reach them.
function serializer(api) {
  return (value) => {
    if (value === api) return { api: null };
    const key = Object.keys(api).find((name) => api[name] === value);
    if (key === undefined) throw new Error(`a memory snapshot cannot hold ${String(value).slice(0, 80)}`);
    return { api: key };
  };
}

// Slots left free in the function table before the libraries: Chromium's Pyodide takes
// one more slot than Node's before this point (11917 against 11916, measured), so the
// libraries start a little further on, at the same slot in both.
const TABLE_HEADROOM = 64;

// Instantiate the libraries (site-packages paths and compiled modules, in this order) from
// table slot `firstSlot` on (a snapshot's; else a fresh start's), at the next free memory,
// and register them under the paths Python's import will dlopen. Returns the table slot
// each one started at.
function loadLibraries(Module, libraries, firstSlot = Module.wasmTable.length + TABLE_HEADROOM) {
  if (Module.wasmTable.length > firstSlot) {
    throw new Error(`the function table already has ${Module.wasmTable.length} slots, the libraries start at ${firstSlot}`);
  }
  Module.wasmTable.grow(firstSlot - Module.wasmTable.length);
  return libraries.map(({ path, module }) => {
    const tableBase = Module.wasmTable.length;
    const file = `${SITE_PACKAGES}/${path}`;
    const dso = Module.newDSO(file, undefined, "loading");
    dso.global = false;
    dso.exports = Module.loadWebAssemblyModule(module, { loadAsync: false, nodelete: true, allowUndefined: true },
      file, {});
    Module.LDSO.loadedLibsByName[file.split("/").at(-1)] = dso;
    return tableBase;
  });
}

/**
 * Start the interpreter: `interpreter` is pyodide.asm.wasm compiled (a promise of a
 * WebAssembly.Module), `libraries` ([{path, module}], module a promise of one) are
 * preloaded; pyodide.mjs and pyodide.asm.js are imported from `loaderURL` and
 * `scriptURL` (by default, from `indexURL`). With `snapshot` ({bytes, table_bases}), restore it; with `makeSnapshot`,
 * allow takeSnapshot() later. Other options go to loadPyodide (stdLibURL, lockFileURL,
 * ...). Returns {pyodide, tableBases}; throws if a snapshot was made with the libraries
 * elsewhere in the table (another build of Pyodide): start without it then.
 */
export async function startPython({ indexURL, loaderURL = `${indexURL}pyodide.mjs`, scriptURL = `${indexURL}pyodide.asm.js`,
  interpreter, libraries, snapshot, makeSnapshot = false, ...options }) {
  const modules = Promise.all(libraries.map(({ module }) => module));
  const [{ loadPyodide }, , compiled] = await Promise.all([import(loaderURL), import(scriptURL), interpreter]);
  const create = globalThis._createPyodideModule;
  let api;
  let tableBases;
  let failure;  // thrown once loadPyodide returns; a snapshot's restore fails earlier (checkTable)
  globalThis._createPyodideModule = (settings) => {
    api = settings.API;
    settings.instantiateWasm = (imports, receive) => {
      WebAssembly.instantiate(compiled, imports).then((instance) => receive(instance, compiled));
      return {};  // Emscripten's sign that the exports come later, through receive()
    };
    // Emscripten runs the last preRun hook first; this one waits for the compiles.
    settings.preRun = [...settings.preRun, async (Module) => {
      Module.addRunDependency("strata-libraries");
      try {
        const compiled = await modules;
        tableBases = loadLibraries(Module, libraries.map(({ path }, i) => ({ path, module: compiled[i] })),
          snapshot?.table_bases[0]);
      } catch (error) {
        failure = error;
      } finally {
        Module.removeRunDependency("strata-libraries");
      }
    }];
    return create(settings);
  };
  // Checked before Python runs numpy code (the first deserialized object), and after.
  const checkTable = () => {
    if (snapshot && String(tableBases) !== String(snapshot.table_bases)) {
      throw new Error(`the snapshot's libraries start at table slots ${snapshot.table_bases}, here at ${tableBases}`);
    }
  };
  let pyodide;
  try {
    pyodide = await loadPyodide({
      indexURL, ...options, _makeSnapshot: makeSnapshot,
      _loadSnapshot: snapshot && snapshot.bytes,
      _snapshotDeserializer: ({ api: key }) => {
        checkTable();
        return key === null ? api : api[key];
      },
    });
  } finally {
    globalThis._createPyodideModule = create;
  }
  if (failure) throw failure;
  checkTable();
  return { pyodide, tableBases };
}

// Write the files of a stored (not deflated) zip, as provisioning writes them, under
// `folder`: a few ms in JS where Python's zipfile takes a tenth of a second or more.
function unpackStoredZip(FS, zip, folder) {
  const view = new DataView(zip.buffer, zip.byteOffset, zip.byteLength);
  const end = zip.byteLength - 22;  // the end-of-central-directory record (no comment)
  if (view.getUint32(end, true) !== 0x06054b50) throw new Error("not a zip without a comment");
  const decoder = new TextDecoder();
  const folders = new Set();  // made already: FS.mkdirTree throws (slowly) on each that exists
  let entry = view.getUint32(end + 16, true);
  for (let count = view.getUint16(end + 10, true); count > 0; count -= 1) {
    const method = view.getUint16(entry + 10, true);
    const size = view.getUint32(entry + 20, true);
    const nameLength = view.getUint16(entry + 28, true);
    const next = entry + 46 + nameLength + view.getUint16(entry + 30, true) + view.getUint16(entry + 32, true);
    const name = decoder.decode(zip.subarray(entry + 46, entry + 46 + nameLength));
    if (method !== 0) throw new Error(`${name} is compressed in the zip; provisioning stores them`);
    const local = view.getUint32(entry + 42, true);
    const data = local + 30 + view.getUint16(local + 26, true) + view.getUint16(local + 28, true);
    const path = `${folder}/${name}`;
    const parent = path.slice(0, path.lastIndexOf("/"));
    if (!folders.has(parent)) {
      FS.mkdirTree(parent);
      folders.add(parent);
    }
    if (!name.endsWith("/")) FS.writeFile(path, zip.subarray(data, data + size));
    entry = next;
  }
}

/**
 * Lay out the Python files: site-packages from a stored zip (bytes), `modules`
 * ({name: text}) in the working directory, which is on sys.path; then run `main` (text),
 * if given.
 */
export function installPython(pyodide, { sitePackages, modules = {}, main }) {
  unpackStoredZip(pyodide.FS, sitePackages, SITE_PACKAGES);
  for (const [name, text] of Object.entries(modules)) pyodide.FS.writeFile(name, text);
  // The folders' finders may have listed them empty. (importlib.invalidate_caches() would
  // also make the zipimporters read the standard library zip's directory again: 0.1 s.)
  pyodide.runPython(`import sys
from importlib.machinery import FileFinder
for finder in sys.path_importer_cache.values():
    isinstance(finder, FileFinder) and finder.invalidate_caches()`);
  if (main !== undefined) pyodide.runPython(main);
}

/** The interpreter's memory, to restore with startPython({snapshot}); needs makeSnapshot. */
export function takeSnapshot(pyodide) {
  return pyodide.makeMemorySnapshot({ serializer: serializer(pyodide._api) });
}
