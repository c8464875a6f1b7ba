import { join } from "node:path";
import type { BunPlugin } from "bun";

/** The file bundled wherever a module imports `debug`. */
export const DEBUG_SHIM = join(import.meta.dir, "debug-shim.cjs");

/**
 * A bundler plugin (Bun.build) that resolves the `debug` package to scripts/debug-shim.cjs in
 * the binaries and the Node bundle. MQTT.js and mqtt-packet call their `debug` loggers several
 * times for every packet; disabled, each call still cost JavaScriptCore a call with a rest
 * array and a getter, about 7% of serve's samples on a queued stream of small messages. With
 * the shim, 20k queued messages took 5-6% less wall time and 8-10% less CPU (10 alternating
 * pairs each, 2026-12-05; docs/benchmarks.md). Source runs (`bun src/main.ts`, the unit tests)
 * keep the real package.
 */
export const quietDebugPlugin: BunPlugin = {
  name: "flashlex-quiet-debug",
  setup(build) {
    build.onResolve({ filter: /^debug$/ }, () => ({ path: DEBUG_SHIM }));
  },
};
