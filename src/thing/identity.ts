import { readFileSync } from "node:fs";
import type { KeyObject } from "node:crypto";
import type { ThingConfig } from "../config/load.ts";
import { loadPrivateKey } from "../crypto/keys.ts";
import { FlashlexError, ExitCode } from "../errors.ts";

/** What the thing proves itself with: the PEMs for mutual TLS and the key that signs its JWTs. */
export interface ThingIdentity {
  thingId: string;
  thingName: string;
  caPem: string;
  certPem: string;
  keyPem: string;
  privateKey: KeyObject;
}

export function readKeyFile(path: string, what: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const exit = code === "EACCES" ? ExitCode.PERMISSION : ExitCode.CONFIG;
    throw new FlashlexError(`${path}: cannot read the ${what} (${code ?? "error"})`, exit);
  }
}

export function loadIdentity(config: ThingConfig): ThingIdentity {
  const keyPem = readKeyFile(config.paths.privateKey, "private key");
  let privateKey: KeyObject;
  try {
    privateKey = loadPrivateKey(keyPem);
  } catch (err) {
    throw new FlashlexError(`${config.paths.privateKey}: ${(err as Error).message}`, ExitCode.CONFIG);
  }
  return {
    thingId: config.yaml.thing.id,
    thingName: config.yaml.thing.name,
    caPem: readKeyFile(config.paths.rootCA, "root CA certificate"),
    certPem: readKeyFile(config.paths.cert, "thing certificate"),
    keyPem,
    privateKey,
  };
}
