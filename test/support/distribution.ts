import { createPrivateKey, type KeyObject } from "node:crypto";
import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { unzipSync } from "fflate";

/**
 * Unpacks a thing's distribution zip into `dir` the way a user's `unzip` does, with the private
 * key owner-only (bootstrap checks that). Returns the thing's directory, `dir/<thing name>`.
 */
export function unpackDistribution(zipPath: string, dir: string, thingName: string): string {
  for (const [path, bytes] of Object.entries(unzipSync(readFileSync(zipPath)))) {
    const target = join(dir, path);
    mkdirSync(dirname(target), { recursive: true });
    if (!path.endsWith("/")) writeFileSync(target, bytes), chmodSync(target, path.includes("private") ? 0o600 : 0o644);
  }
  return join(dir, thingName);
}

/** A thing as a test uses it: made by `hub thing create`, its distribution unpacked. */
export interface ProvisionedThing {
  id: string;
  name: string;
  /** the unpacked distribution's folder */
  root: string;
  keysDir: string;
  configPath: string;
  dataDir: string;
  /** -c, -k and -d for the thing commands */
  flags: string[];
  caPem: string;
  certPem: string;
  privateKeyPem: string;
  publicKeyPem: string;
  privateKey: KeyObject;
}

/**
 * Provisions a thing as an operator does: `hub thing create NAME -o ... --json` with the
 * compiled binary (`flashlex` runs it and throws unless it exits 0), keeps the zip as
 * `work/<name>.zip` and unpacks it into `work/things/<name>`.
 */
export async function provisionThing(
  flashlex: (args: string[]) => Promise<{ stdout: string }>,
  hubDir: string,
  work: string,
  typedName: string,
  createArgs: string[] = [],
): Promise<ProvisionedThing & { keyType: string }> {
  const written = join(work, `${typedName}.zip`);
  const created = JSON.parse((await flashlex(["hub", "thing", "create", typedName, "--dir", hubDir, "-o", written, "--json", ...createArgs])).stdout);
  const zip = join(work, `${created.name}.zip`);
  renameSync(written, zip);
  const root = unpackDistribution(zip, join(work, "things"), created.name);
  const keysDir = join(root, "keys");
  const read = (file: string) => readFileSync(join(keysDir, file), "utf8");
  const privateKeyPem = read(`${created.name}-keypair-private.pem`);
  return {
    id: created.id,
    name: created.name,
    keyType: created.keyType,
    root,
    keysDir,
    configPath: join(root, "config.yml"),
    dataDir: join(root, "data"),
    flags: ["-c", join(root, "config.yml"), "-k", keysDir, "-d", join(root, "data")],
    caPem: read("root-ca-cert.pem"),
    certPem: read(`${created.name}-certificate.pem`),
    privateKeyPem,
    publicKeyPem: read(`${created.name}-keypair-public.pem`),
    privateKey: createPrivateKey(privateKeyPem),
  };
}
