// Runs a Node.js executor: `main(input, sdk)` if the code defines it — as a plain function,
// `module.exports = { main }`, `exports.main = …`, `module.exports = main`, or an ES module's
// `export (async) function main` — else the script as it is (input JSON on stdin, output JSON
// on stdout, as Enneo scripts expect).
"use strict";
const fs = require("fs");
const vm = require("vm");
const path = require("path");
const { pathToFileURL } = require("url");
const sdk = require(process.env.SDK);

global.require = require;
global.sdk = sdk;
if (process.env.SWITCHYARD_WARM) {
  // Started ahead of its run: say so on the SDK channel, wait there for the code and the input
  // (one JSON line; the hub sends nothing else before the code's first call), write them.
  const fd = Number(process.env.SWITCHYARD_SDK_FD);
  fs.writeSync(fd, "ready\n");
  const parts = [];
  const chunk = Buffer.alloc(1 << 16);
  for (;;) {
    const n = fs.readSync(fd, chunk, 0, chunk.length, null);
    if (n === 0) process.exit(1);
    parts.push(Buffer.from(chunk.subarray(0, n)));
    if (chunk[n - 1] === 10) break;
  }
  const go = JSON.parse(Buffer.concat(parts).toString("utf8"));
  fs.writeFileSync("main.js", go.main);
  fs.writeFileSync("input.json", go.input);
}
if (process.env.SWITCHYARD_PACKAGES) {
  // The executor's installed packages, bound read-only into the run's root: found from main.js
  // (CommonJS and ES modules alike) through a node_modules beside it.
  fs.symlinkSync(path.join(process.env.SWITCHYARD_PACKAGES, "node_modules"), path.join(process.cwd(), "node_modules"));
}
const file = path.join(process.cwd(), "main.js");
const source = fs.readFileSync(file, "utf8");

// An ES module (`import` / `export` at the start of a line) is loaded as one.
const isModule = /^\s*(export|import)\s/m.test(source);

// Saving the executor: compile only, and name what does not.
if (process.env.SWITCHYARD_CHECK) {
  if (isModule) {
    // Node's own check of an ES module file (it names the line; nothing of it runs).
    fs.writeFileSync("main.mjs", source);
    const r = require("child_process").spawnSync(process.execPath, ["--check", "main.mjs"], { encoding: "utf8" });
    if (r.status === 0) process.exit(0);
    const said = r.stderr || String(r.error || "node --check failed");
    const line = /main\.mjs:(\d+)/.exec(said);
    const error = said.split("\n").find((l) => /Error/.test(l)) || said.trim();
    process.stderr.write(`${error}${line ? ` (main.js, line ${line[1]})` : ""}\n`);
    process.exit(1);
  }
  try {
    new vm.Script(wrap(source), { filename: "main.js" });
    process.exit(0);
  } catch (e) {
    const line = /main\.js:(\d+)/.exec((e && e.stack) || "");
    process.stderr.write(`${e.name}: ${e.message}${line ? ` (main.js, line ${line[1]})` : ""}\n`);
    process.exit(1);
  }
}

// CommonJS, as Node runs a file: `module`, `exports`, `require`, `__filename`, `__dirname`. A
// top-level `function main` is found too (it is local to the wrapper, so it is looked up inside
// it).
function wrap(code) {
  return (
    "(function (exports, require, module, __filename, __dirname) {" +
    code +
    "\n;return typeof main === 'function' ? main : undefined;\n})"
  );
}

async function load() {
  if (isModule) {
    const mjs = path.join(process.cwd(), "main.mjs");
    fs.writeFileSync(mjs, source);
    const m = await import(pathToFileURL(mjs).href);
    return typeof m.main === "function" ? m.main : typeof m.default === "function" ? m.default : undefined;
  }
  const module = { exports: {} };
  const wrapped = vm.runInThisContext(wrap(source), { filename: "main.js" });
  const local = wrapped.call(module.exports, module.exports, require, module, file, process.cwd());
  const exported = module.exports;
  if (typeof exported === "function") return exported;
  if (exported && typeof exported.main === "function") return exported.main;
  return local;
}

load()
  .then((main) => {
    if (typeof main !== "function") return;
    const input = JSON.parse(fs.readFileSync("input.json", "utf8"));
    return Promise.resolve()
      .then(() => main(input, sdk))
      .then((out) => sdk._result(out === undefined ? null : out))
      .then(() => sdk._close());
  })
  .catch((e) => {
    process.stderr.write((e && e.stack) || String(e));
    process.stderr.write("\n");
    process.exit(1);
  });
