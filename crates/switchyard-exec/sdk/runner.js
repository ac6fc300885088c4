// Runs a Node.js executor: `main(input, sdk)` if the code defines it, else the script as it is
// (input JSON on stdin, output JSON on stdout, as Enneo scripts expect).
"use strict";
const fs = require("fs");
const vm = require("vm");
const path = require("path");
const sdk = require(process.env.SDK);

global.require = require;
global.sdk = sdk;
const file = path.join(process.cwd(), "main.js");
vm.runInThisContext(fs.readFileSync(file, "utf8"), { filename: "main.js" });
if (typeof global.main === "function") {
  const input = JSON.parse(fs.readFileSync("input.json", "utf8"));
  Promise.resolve()
    .then(() => global.main(input, sdk))
    .then((out) => sdk._result(out === undefined ? null : out))
    .then(() => sdk._close())
    .catch((e) => {
      process.stderr.write((e && e.stack) || String(e));
      process.stderr.write("\n");
      process.exit(1);
    });
}
