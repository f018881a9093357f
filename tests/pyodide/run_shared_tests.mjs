// Runs test modules inside Pyodide under Node, with strata installed from its wheel the
// way the browser worker installs it. Prints one JSON line: {module: {test: "ok" | error}}.
//
//   node run_shared_tests.mjs INDEX_URL WHEEL REPO_ROOT MODULE.py...
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";

const [indexURL, wheelPath, repoRoot, ...modules] = process.argv.slice(2).map((arg) => resolve(arg));
const { loadPyodide } = await import(pathToFileURL(`${indexURL}/pyodide.mjs`).href);
const pyodide = await loadPyodide({ indexURL, packageCacheDir: indexURL, stdout: console.error, stderr: console.error });
const failures = [];
await pyodide.loadPackage("numpy", { messageCallback: () => {}, errorCallback: (m) => failures.push(m) });
if (failures.length) throw new Error(`numpy did not load: ${failures.join("; ")}`);
pyodide.unpackArchive(new Uint8Array(readFileSync(wheelPath)), "wheel");
// The repo appears at the same path inside Pyodide, so tests find models/ from __file__.
pyodide.FS.mkdirTree(repoRoot);
pyodide.FS.mount(pyodide.FS.filesystems.NODEFS, { root: repoRoot }, repoRoot);
pyodide.globals.set("MODULES", pyodide.toPy(modules));
const results = await pyodide.runPythonAsync(`
import contextlib, json, re, runpy, sys, traceback, types

# pytest does not exist in Pyodide here; shared tests use only pytest.raises.
class _Raised:
    value = None

@contextlib.contextmanager
def _raises(expected, match=None):
    info = _Raised()
    try:
        yield info
    except expected as exc:
        if match is not None and not re.search(match, str(exc)):
            raise AssertionError(f"{exc!r} does not match {match!r}")
        info.value = exc
    else:
        raise AssertionError(f"did not raise {expected.__name__}")

sys.modules["pytest"] = types.SimpleNamespace(raises=_raises)
results = {}
for path in MODULES:
    outcome = results[path] = {}
    namespace = runpy.run_path(path)
    for name, test in namespace.items():
        if name.startswith("test_") and callable(test):
            try:
                test()
                outcome[name] = "ok"
            except BaseException:
                outcome[name] = traceback.format_exc(limit=-3)
json.dumps(results)
`);
console.log(results);
