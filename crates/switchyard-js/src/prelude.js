// The SDK as JavaScript sees it. Every call is a synchronous round trip to the hub through the
// native `__sdk`, so it works with and without `await`.
(() => {
  const call = (op, args) => {
    const answer = JSON.parse(__sdk(JSON.stringify(Object.assign({ op }, args))));
    if (!answer.ok) throw new Error(answer.error);
    return answer.value === undefined ? null : answer.value;
  };
  const text = (parts) => parts.map((p) => (typeof p === "string" ? p : JSON.stringify(p))).join(" ");
  const log = (...parts) => { call("log", { message: text(parts) }); };
  globalThis.sdk = Object.freeze({
    http: (method, url, options = {}) => call("http", {
      method, url, headers: options.headers, query: options.query, json: options.json, body: options.body,
    }),
    storage: Object.freeze({
      get: (key) => call("storage.get", { key }),
      set: (key, value) => call("storage.set", { key, value }),
      delete: (key) => call("storage.delete", { key }),
    }),
    secret: (name) => call("secret", { name }),
    call: (executor, input) => call("call", { executor, input }),
    api: (method, path, body = null) => call("api", { method, path, body }),
    log,
  });
  globalThis.console = Object.freeze({ log, info: log, warn: log, error: log, debug: log });
})();
