/**
 * Writing an enrolled thing's folder, all or nothing: the layout of the hub's distribution
 * (`config.yml`, and `keys/` beside it holding the root CA, the certificate, the private key
 * (0600) and the public key), so `bootstrap`, `serve` and `install-service` find it exactly as
 * they find an unzipped distribution.
 *
 * Everything is first written into a staging directory inside the folder
 * (`.enrol.<pid>-<8 hex>`, 0700), each file fsynced; then `keys/` is renamed into place, then
 * `config.yml`, the commit point: a folder with a config.yml has its keys. A failure, or an
 * interruption before the commit, removes what was placed; a kill -9 leaves only a staging
 * directory, which the next enrolment in the folder removes (its pid is no longer alive).
 */

import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, renameSync, rmdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { fsyncDirectory, writeFileDurably } from "../../shared/durable-files.ts";
import { ConflictError } from "../../shared/errors.ts";
import { removeLeftovers } from "../../shared/files.ts";

const STAGING = /^\.enrol\.(\d+)-[0-9a-f]{8}$/;

export interface FolderFile {
  content: string;
  mode: number;
}

/** Throws ConflictError (65) when `dir` already holds a thing (a config.yml, or a keys/ that is not empty): enrolment never writes over one. */
export function checkFolderFree(dir: string): void {
  if (existsSync(join(dir, "config.yml"))) {
    throw new ConflictError(`${join(dir, "config.yml")} exists: a thing already lives in ${dir}; enrol into an empty folder (--dir)`);
  }
  const keys = join(dir, "keys");
  if (existsSync(keys) && readdirSync(keys).length > 0) {
    throw new ConflictError(`${keys} is not empty: a thing's keys already live in ${dir}; enrol into an empty folder (--dir)`);
  }
}

/**
 * Writes `config` as `dir/config.yml` and `keys` into `dir/keys/`, all or nothing (see the module
 * comment). `dir` is made when missing. Throws ConflictError when `dir` already holds a thing,
 * or what the file system throws, with nothing of the new thing left in `dir`.
 */
export function writeThingFolder(dir: string, config: string, keys: Record<string, FolderFile>): void {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  removeLeftovers(dir, STAGING);
  checkFolderFree(dir);
  const staging = join(dir, `.enrol.${process.pid}-${randomBytes(4).toString("hex")}`);
  const keysDir = join(dir, "keys");
  let placedKeys = false;
  try {
    mkdirSync(join(staging, "keys"), { recursive: true, mode: 0o700 });
    for (const [name, file] of Object.entries(keys)) writeFileDurably(join(staging, "keys", name), file.content, file.mode);
    writeFileDurably(join(staging, "config.yml"), config, 0o644);
    if (existsSync(keysDir)) rmdirSync(keysDir); // empty (checkFolderFree): a rename cannot replace a directory
    renameSync(join(staging, "keys"), keysDir);
    placedKeys = true;
    fsyncDirectory(dir);
    renameSync(join(staging, "config.yml"), join(dir, "config.yml"));
    fsyncDirectory(dir);
  } catch (err) {
    if (placedKeys && !existsSync(join(dir, "config.yml"))) rmSync(keysDir, { recursive: true, force: true });
    throw err;
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}
