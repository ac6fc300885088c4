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
const file = path.join(process.cwd(), "main.js");
const source = fs.readFileSync(file, "utf8");

// An ES module (`import` / `export` at the start of a line) is loaded as one.
const isModule = /^\s*(export|import)\s/m.test(source);

async function load() {
  if (isModule) {
    const mjs = path.join(process.cwd(), "main.mjs");
    fs.writeFileSync(mjs, source);
    const m = await import(pathToFileURL(mjs).href);
    return typeof m.main === "function" ? m.main : typeof m.default === "function" ? m.default : undefined;
  }
  // CommonJS, as Node runs a file: `module`, `exports`, `require`, `__filename`, `__dirname`.
  // A top-level `function main` is found too (it is local to the wrapper, so it is looked up
  // inside it).
  const module = { exports: {} };
  const wrapped = vm.runInThisContext(
    "(function (exports, require, module, __filename, __dirname) {" +
      source +
      "\n;return typeof main === 'function' ? main : undefined;\n})",
    { filename: "main.js", lineOffset: 0 }
  );
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
