// Switchyard SDK for Node.js executors. Every call goes to the hub over the socket inherited as
// file descriptor SWITCHYARD_SDK_FD (it has no name, so no other process can reach it): HTTP requests are made by the hub (egress policy, secret injection),
// storage is the organization's key-value store, secrets come from the hub's encrypted store.
"use strict";
const net = require("net");

let sock = null;
let buffer = "";
const waiting = [];

function connect() {
  if (sock) return sock;
  sock = new net.Socket({ fd: Number(process.env.SWITCHYARD_SDK_FD), readable: true, writable: true });
  sock.setEncoding("utf8");
  sock.on("data", (chunk) => {
    buffer += chunk;
    let nl;
    while ((nl = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      const next = waiting.shift();
      if (next) next(JSON.parse(line));
    }
  });
  sock.on("close", () => {
    while (waiting.length) waiting.shift()({ ok: false, error: "the hub closed the SDK channel" });
  });
  return sock;
}

function rpc(op, args) {
  return new Promise((resolve, reject) => {
    waiting.push((answer) => (answer.ok ? resolve(answer.value === undefined ? null : answer.value) : reject(new Error(answer.error))));
    connect().write(JSON.stringify(Object.assign({ op }, args)) + "\n");
  });
}

const text = (parts) => parts.map((p) => (typeof p === "string" ? p : JSON.stringify(p))).join(" ");

const sdk = {
  http: (method, url, options = {}) => rpc("http", {
    method, url, headers: options.headers, query: options.query, json: options.json, body: options.body,
  }),
  storage: {
    get: (key) => rpc("storage.get", { key }),
    set: (key, value) => rpc("storage.set", { key, value }),
    delete: (key) => rpc("storage.delete", { key }),
  },
  secret: (name) => rpc("secret", { name }),
  call: (executor, input) => rpc("call", { executor, input }),
  // The hub's own API as this executor's organization, with its `api_role`: `path` is under
  // /v1/orgs/{org} (e.g. "/events"). Resolves to { status, body }.
  api: (method, path, body = null) => rpc("api", { method, path, body }),
  log: (...parts) => rpc("log", { message: text(parts) }),
};

module.exports = sdk;
module.exports.sdk = sdk;
module.exports._result = (value) => rpc("result", { value });
module.exports._close = () => { if (sock) sock.end(); };
