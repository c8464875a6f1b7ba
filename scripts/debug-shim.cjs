/**
 * Bundled in place of the `debug` package (scripts/quiet-debug.ts says why). With DEBUG set it
 * is the real package, so `DEBUG='mqttjs*' flashlex serve` traces MQTT.js as it always did;
 * without it, every logger is one shared empty function, which JavaScriptCore drops from the
 * hot path where the real package's disabled logger still gathered its arguments on each call.
 */
if (process.env.DEBUG) {
  const createDebug = require("debug/src/index.js");
  const { formatWithOptions } = require("node:util");
  // A trace prints whole payloads, and an egress envelope (MQTT collect) carries the thing's
  // signed token, a bearer credential for minutes: its signature is cut from every line, header
  // and claims kept for whoever reads the trace. RFC 7515 §7.1: BASE64URL(header).BASE64URL(payload).BASE64URL(signature).
  const SIGNED_TOKEN = /(eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+)\.[A-Za-z0-9_-]+/g;
  // the package's own writer (debug/src/node.js log), with the signatures cut
  createDebug.log = (...args) =>
    process.stderr.write(`${formatWithOptions(createDebug.inspectOpts, ...args).replace(SIGNED_TOKEN, "$1.<signature redacted>")}\n`);
  module.exports = createDebug;
} else {
  const off = () => {};
  off.enabled = false;
  off.namespace = "";
  off.extend = () => off;
  off.log = off;
  const createDebug = () => off;
  createDebug.enable = () => {};
  createDebug.disable = () => "";
  createDebug.enabled = () => false;
  module.exports = createDebug;
}
