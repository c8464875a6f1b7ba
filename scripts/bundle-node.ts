import { existsSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import type { BunPlugin } from "bun";
import { quietDebugPlugin } from "./quiet-debug.ts";

/**
 * Bundles the agent into ONE CommonJS file for Node 20 (the armv7 single-executable build): a
 * Node SEA in 20.11 has no assets and its `require` loads only built-ins, so everything, the
 * SQLite .wasm included, must be inside this file. Usage: `bun scripts/bundle-node.ts OUT [ENTRY]`.
 */
const root = resolve(import.meta.dir, "..");
const openTs = join(root, "src/shared/sqlite/open.ts");
const openWasmTs = join(root, "src/shared/sqlite/open-wasm.ts");
const postgresTs = join(root, "src/hub/store/postgres-driver.ts");
const postgresUnavailableTs = join(root, "src/hub/store/postgres-unavailable.ts");
const flockTs = join(root, "src/shared/flock.ts");
const flockCommandTs = join(root, "src/shared/flock-command.ts");

/** The line of node-sqlite3-wasm's emscripten glue that creates its Module object (0.8.x). */
const MODULE_LINE = 'var Module=typeof Module!="undefined"?Module:{};';

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");

/**
 * Swaps the bun:sqlite driver for the wasm one, the hub's PostgreSQL driver (Bun's `SQL`
 * client, which Node does not have) for one that refuses PostgreSQL in words, flock(2) through
 * bun:ffi for util-linux's flock(1) (src/shared/flock-command.ts), and hands the wasm glue its binary as
 * `Module.wasmBinary` (emscripten instantiates from that instead of reading
 * `__dirname/node-sqlite3-wasm.wasm`, which does not exist next to a bundle or in a SEA).
 */
export const nodeRuntimePlugin: BunPlugin = {
  name: "flashlex-node-runtime",
  setup(build) {
    build.onLoad({ filter: new RegExp(`^${escapeRegExp(openTs)}$`) }, () => ({
      contents: `export { openSqlDatabase } from ${JSON.stringify(openWasmTs)};`,
      loader: "ts",
    }));
    build.onLoad({ filter: new RegExp(`^${escapeRegExp(postgresTs)}$`) }, () => ({
      contents: `export { openPostgresHubSql } from ${JSON.stringify(postgresUnavailableTs)};`,
      loader: "ts",
    }));
    build.onLoad({ filter: new RegExp(`^${escapeRegExp(flockTs)}$`) }, () => ({
      contents: `export { takeExclusiveFlock } from ${JSON.stringify(flockCommandTs)};`,
      loader: "ts",
    }));
    build.onLoad({ filter: /node-sqlite3-wasm[\\/]dist[\\/]node-sqlite3-wasm\.js$/ }, async ({ path }) => {
      const glue = await Bun.file(path).text();
      // a new library version may word its glue differently: fail the build, never ship a bundle that looks for a file
      if (glue.split(MODULE_LINE).length !== 2)
        throw new Error(`${path}: cannot find where to inline the wasm (${MODULE_LINE}); update scripts/bundle-node.ts`);
      const wasm = Buffer.from(await Bun.file(join(dirname(path), "node-sqlite3-wasm.wasm")).arrayBuffer());
      if (!WebAssembly.validate(wasm)) throw new Error(`${path}: node-sqlite3-wasm.wasm is not valid WebAssembly`);
      const inlined = `var Module={wasmBinary:Buffer.from(${JSON.stringify(wasm.toString("base64"))},"base64")};`;
      return { contents: glue.replace(MODULE_LINE, () => inlined), loader: "js" };
    });
  },
};

/**
 * A `#!/usr/bin/env bun` line on the entry (src/main.ts has one) makes Bun.build emit its own
 * CommonJS flavour even with `target: "node"`: a `// @bun @bun-cjs` pragma and the whole file as
 * an uncalled `(function(exports, require, module, ...) {...})` expression, which Node evaluates
 * and discards (the bundle runs nothing and exits 0). The entry is loaded without that line.
 */
function entryWithoutBunShebang(entry: string): BunPlugin {
  return {
    name: "flashlex-node-entry",
    setup(build) {
      build.onLoad({ filter: new RegExp(`^${escapeRegExp(entry)}$`) }, async ({ path }) => ({
        contents: (await Bun.file(path).text()).replace(/^#!.*\n/, "\n"),
        loader: "ts",
      }));
    },
  };
}

export interface NodeBundle {
  outFile: string;
  bytes: number;
}

export interface NodeBundleOptions {
  entry?: string;
  minify?: boolean;
  /** compile-time constants, as `bun build --define` (values are JavaScript source: JSON.stringify strings) */
  define?: Record<string, string>;
}

export async function bundleForNode(outFile: string, options: NodeBundleOptions = {}): Promise<NodeBundle> {
  const entry = resolve(options.entry ?? join(root, "src/main.ts"));
  if (!existsSync(entry)) throw new Error(`bundle entry ${entry} does not exist`);
  const result = await Bun.build({
    entrypoints: [entry],
    target: "node",
    format: "cjs",
    // Names and line breaks stay: a stack trace from a device is worth more than a few KB, and
    // Node prints the source line of an uncaught error, which in a one-line bundle is all of it.
    minify: options.minify === false ? false : { whitespace: false, syntax: true, identifiers: false },
    define: options.define,
    plugins: [entryWithoutBunShebang(entry), nodeRuntimePlugin, quietDebugPlugin],
    throw: false,
  });
  if (!result.success) throw new AggregateError(result.logs, `bundling ${entry} for Node failed:\n${result.logs.join("\n")}`);
  if (result.outputs.length !== 1) {
    throw new Error(`the Node bundle must be one file, got: ${result.outputs.map((o) => o.path).join(", ")}`);
  }
  const code = await result.outputs[0]!.text();
  if (/^(#!.*\n)?\/\/ @bun/.test(code)) throw new Error(`the Node bundle came out in Bun's own format (// @bun pragma): Node would not run it`);
  const bunImport = code.match(/(?:require\(|import\(|from\s*)["']bun(?::[\w-]+)?["']/);
  if (bunImport) throw new Error(`the Node bundle still imports Bun: ${bunImport[0]}`);
  await Bun.write(outFile, code);
  return { outFile, bytes: statSync(outFile).size };
}

if (import.meta.main) {
  const [outFile, entry] = process.argv.slice(2);
  if (!outFile) {
    console.error("usage: bun scripts/bundle-node.ts OUT.cjs [ENTRY]");
    process.exit(64);
  }
  const bundle = await bundleForNode(outFile, { entry });
  console.log(`${bundle.outFile} ${bundle.bytes} bytes`);
}
