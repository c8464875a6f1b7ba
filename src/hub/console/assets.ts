/**
 * The console's two static files, served by the hub itself (the hub may have no internet: no
 * CDN, no web font): the stylesheet (assets/console.css, imported as text) and the browser
 * script (client/, bundled by build-client.ts). Both are served under names holding their
 * content hash, so a browser may cache them for a year and still never runs an old script
 * after an upgrade.
 *
 * Where the script comes from: a compiled binary embeds generated/console-client.js, which
 * `bun run build` writes just before compiling (`bun build --compile` inlines a text import,
 * dynamic ones too); a hub run from source (its client/ folder is on disk) bundles the sources
 * in memory at first use. The generated file is never committed (.gitignore).
 */
import { createHash } from "node:crypto";
import { pathExists } from "../../shared/path-exists.ts";
import css from "./assets/console.css" with { type: "text" };
import { bundleConsoleClient, CLIENT_ENTRY } from "./build-client.ts";

export interface ConsoleAsset {
  /** the URL path, content-hashed: `/assets/console-1a2b3c4d.js` */
  path: string;
  contentType: string;
  body: string;
}

export interface ConsoleAssets {
  js: ConsoleAsset;
  css: ConsoleAsset;
}

const hashed = (name: string, ext: string, body: string) => `/assets/${name}-${createHash("sha256").update(body).digest("hex").slice(0, 10)}.${ext}`;

/** The script: bundled from source when the sources are here, else the one embedded at build time. */
async function clientScript(): Promise<string> {
  if (pathExists(CLIENT_ENTRY)) {
    return bundleConsoleClient();
  }
  const embedded = await import("./generated/console-client.js", { with: { type: "text" } });
  return embedded.default;
}

let loading: Promise<ConsoleAssets> | undefined;

/** The console's assets, made once per process. Rejects when the script can be neither bundled nor found. */
export function consoleAssets(): Promise<ConsoleAssets> {
  loading ??= clientScript().then((js) => ({
    js: { path: hashed("console", "js", js), contentType: "text/javascript; charset=utf-8", body: js },
    css: { path: hashed("console", "css", css), contentType: "text/css; charset=utf-8", body: css },
  }));
  // A failed load is tried again at the next request rather than remembered.
  loading.catch(() => (loading = undefined));
  return loading;
}
