// Runs the worker's Python under Node, for `strata provision` (snapshot.py): started as
// the browser's worker starts it (browser/boot.mjs), with the same files.
//
//   node snapshot.mjs CONFIG.json
//
// CONFIG.mode "survey": print {"modules": [...]}, the modules Python has imported after it
//   also imported CONFIG.candidates (those that import at all), over the full stdlib; and
//   write to CONFIG.out a zip of every .py file of that stdlib and of CONFIG.site_packages
//   compiled (as stdlib/NAME.pyc and site-packages/NAME.pyc, unchecked-hash pycs: Python
//   loads them without looking for the source), so the browser never compiles them.
// CONFIG.mode "snapshot": write the interpreter's memory after the imports to CONFIG.out;
//   print {"table_bases": [...]}. Entropy and the wall clock are fixed, and Python's hash
//   seed is 0, so the same inputs give the same bytes.
import { readFileSync, writeFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const config = JSON.parse(readFileSync(process.argv[2], "utf8"));
const { SITE_PACKAGES, startPython, installPython, takeSnapshot } = await import(pathToFileURL(config.boot).href);

if (config.mode === "snapshot") {
  let state = 0x2545f491;
  const getRandomValues = (view) => {
    const bytes = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
    for (let i = 0; i < bytes.length; i++) {
      state = (state * 1103515245 + 12345) >>> 0;
      bytes[i] = state >>> 24;
    }
    return view;
  };
  Object.defineProperty(globalThis, "crypto", { value: { getRandomValues, subtle: globalThis.crypto.subtle } });
  Date.now = () => 1700000000000;
}

const libraries = config.libraries.map(({ path, file }) => ({ path, module: WebAssembly.compile(readFileSync(file)) }));
const { pyodide, tableBases } = await startPython({
  indexURL: `${config.index_dir}/`, interpreter: WebAssembly.compile(readFileSync(`${config.index_dir}/pyodide.asm.wasm`)),
  stdLibURL: config.stdlib, lockFileURL: config.lock, libraries,
  makeSnapshot: config.mode === "snapshot", env: { PYTHONHASHSEED: "0" },
  stdout: (line) => console.error(line), stderr: (line) => console.error(line),
});
const modules = Object.fromEntries(Object.entries(config.modules).map(([name, file]) => [name, readFileSync(file, "utf8")]));
const main = readFileSync(config.main, "utf8");
installPython(pyodide, { sitePackages: new Uint8Array(readFileSync(config.site_packages)), modules, main });
pyodide.runPython(config.warm_up);

if (config.mode === "survey") {
  pyodide.globals.set("CANDIDATES", pyodide.toPy(config.candidates));
  const names = pyodide.runPython(`
import importlib, json, sys
for name in CANDIDATES:
    try:
        importlib.import_module(name)
    except Exception:  # optional (websockets), CPython's only, or left out of numpy
        pass
json.dumps(sorted(sys.modules))
`);
  pyodide.FS.writeFile("/tmp/site-packages.zip", new Uint8Array(readFileSync(config.site_packages)));
  pyodide.globals.set("SITE_PACKAGES", SITE_PACKAGES);
  pyodide.runPython(`
import importlib.util, sys, zipfile
from importlib._bootstrap_external import _code_to_hash_pyc

def compiled(source, path):
    code = compile(source, path, "exec", dont_inherit=True)
    return bytes(_code_to_hash_pyc(code, importlib.util.source_hash(source), False))

stdlib = next(path for path in sys.path if path.endswith(".zip"))
with zipfile.ZipFile("/tmp/compiled.zip", "w") as out:
    for kind, archive, where in [("stdlib", stdlib, stdlib), ("site-packages", "/tmp/site-packages.zip", SITE_PACKAGES)]:
        with zipfile.ZipFile(archive) as files:
            for name in files.namelist():
                if name.endswith(".py"):
                    out.writestr(f"{kind}/{name}c", compiled(files.read(name), f"{where}/{name}c"))
`);
  writeFileSync(config.out, pyodide.FS.readFile("/tmp/compiled.zip"));
  console.log(JSON.stringify({ modules: JSON.parse(names) }));
} else {
  pyodide.runPython("import gc; gc.collect()");
  writeFileSync(config.out, takeSnapshot(pyodide));
  console.log(JSON.stringify({ table_bases: tableBases }));
}
