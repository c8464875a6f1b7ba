/**
 * Bundled in place of the `debug` package (scripts/quiet-debug.ts says why). With DEBUG set it
 * is the real package, so `DEBUG='mqttjs*' flashlex serve` traces MQTT.js as it always did;
 * without it, every logger is one shared empty function, which JavaScriptCore drops from the
 * hot path where the real package's disabled logger still gathered its arguments on each call.
 */
if (process.env.DEBUG) {
  module.exports = require("debug/src/index.js");
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
