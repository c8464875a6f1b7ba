/// <reference path="./text-imports.d.ts" />
/**
 * A thing's distribution zip, made from the files in `dist-template/` (inlined into the binary at
 * build time, so a compiled hub needs no files beside it). Pure: values in, bytes out.
 *
 *   <name>/config.yml    the guide's config format, filled in
 *   <name>/keys/         root-ca-cert.pem, <name>-certificate.pem,
 *                        <name>-keypair-private.pem (mode 0600), <name>-keypair-public.pem
 *   <name>/README.md     how to bootstrap, serve and install the service
 *   <name>/flashlex.py   the Python module for thing applications (the old SDK's FlashlexSDK),
 *                        copied as it is
 *
 * so that `flashlex bootstrap -c <name>/config.yml -k <name>/keys -d <name>/data` works right
 * after `unzip`.
 */

import { deflateSync, Zip, type ZipAttributes, type ZipInputFile, ZipPassThrough } from "fflate";
import { parse } from "yaml";
import configTemplate from "../../../dist-template/config.yml" with { type: "text" };
import readmeTemplate from "../../../dist-template/README.md" with { type: "text" };
import { PYTHON_MODULE, PYTHON_MODULE_FILE } from "../../protocol/python-module.ts";
import { type ThingYaml, ThingYamlSchema } from "../../protocol/thing-config.ts";
import { ConfigError } from "../../shared/errors.ts";
import { quoteGiven } from "../../shared/log.ts";
import { COMMIT } from "../../shared/version.ts";
import { PLAIN_YAML_VALUE } from "../home/settings.ts";

export const CONFIG_TEMPLATE: string = configTemplate;
export const README_TEMPLATE: string = readmeTemplate;

export interface DistributionValues {
  thingId: string;
  thingName: string;
  apiEndpoint: string;
  env: string;
  brokerHost: string;
  brokerPort: number;
  commitSha?: string;
  /** the hub's update public key (`ed25519:...`); absent: the config has no `update` block and the thing never updates itself */
  updatePublicKey?: string;
}

export interface ThingKeys {
  rootCaPem: string;
  certPem: string;
  privateKeyPem: string;
  publicKeyPem: string;
}

/** The key file names the guide used; config.yml names them the same way. */
export function keyFileNames(thingName: string) {
  return {
    rootCA: "root-ca-cert.pem",
    cert: `${thingName}-certificate.pem`,
    privateKey: `${thingName}-keypair-private.pem`,
    publicKey: `${thingName}-keypair-public.pem`,
  };
}

/**
 * Values go into the YAML unquoted, so each must be a plain scalar that YAML cannot read as
 * anything else: it starts with a letter or digit and holds no space, `#`, `,`, quote or brace.
 * Every value the hub produces (UUIDs, names, URLs, host names) fits; anything else is refused
 * rather than escaped, and the result is validated against the thing's schema as well.
 */
const PLAIN = PLAIN_YAML_VALUE;

/** The hub.yml setting each template value comes from, for error messages. */
const HUB_SETTING_OF: Record<string, string> = {
  apiEndpoint: "hub.api.publicUrl",
  env: "hub.env",
  brokerHost: "hub.broker.host",
  brokerPort: "hub.broker.port",
};

/** Replaces `{{key}}` placeholders; an unknown placeholder is a bug in the template and throws. */
export function renderTemplate(template: string, values: Record<string, string | number>, plainOnly: boolean): string {
  return template.replace(/\{\{\s*([A-Za-z0-9_]+)\s*\}\}/g, (_, key: string) => {
    const value = values[key];
    if (value === undefined) throw new Error(`template placeholder {{${key}}} has no value`);
    const text = String(value);
    if (plainOnly && !PLAIN.test(text)) {
      // hub.yml's schema refuses such values; this is the net under it, naming the setting
      const setting = HUB_SETTING_OF[key] ?? key;
      throw new ConfigError(`hub.yml: ${setting}: ${quoteGiven(text)} cannot go into a distribution's config.yml unquoted`);
    }
    return text;
  });
}

function templateValues(v: DistributionValues): Record<string, string | number> {
  return {
    thingId: v.thingId,
    thingName: v.thingName,
    apiEndpoint: v.apiEndpoint.replace(/\/+$/, ""),
    env: v.env,
    brokerHost: v.brokerHost,
    brokerPort: v.brokerPort,
    commitSha: v.commitSha ?? COMMIT,
    ...(v.updatePublicKey ? { updatePublicKey: v.updatePublicKey } : {}),
  };
}

/** The thing's config.yml, checked against the same schema the agent loads it with. */
export function renderThingConfig(values: DistributionValues): { text: string; parsed: ThingYaml } {
  // Without an update key the `update:` block (the line and its indented lines) is left out.
  const template = values.updatePublicKey ? CONFIG_TEMPLATE : CONFIG_TEMPLATE.replace(/^ {2}# Self-update:.*\n {2}update:\n(?: {4}.*\n)+/m, "");
  const text = renderTemplate(template, templateValues(values), true);
  const result = ThingYamlSchema.safeParse(parse(text));
  if (!result.success) {
    const issue = result.error.issues[0]!;
    throw new ConfigError(`hub.yml: the distribution's config.yml would not validate: ${issue.path.join(".")}: ${issue.message}`);
  }
  return { text, parsed: result.data };
}

/** The distribution's README.md; values go in as they are (no YAML rule). Throws for a placeholder without a value (a bug). */
export function renderReadme(values: DistributionValues): string {
  return renderTemplate(README_TEMPLATE, templateValues(values), false);
}

/** A regular file's attributes in a zip made on Unix (APPNOTE 4.4.2, 4.4.15): what `unzip` restores. */
const unixFile = (mode: number, mtime: Date): ZipAttributes => ({ os: 3, attrs: ((0o100000 | mode) << 16) >>> 0, mtime });

/**
 * A zip entry deflated in one call, as zipSync deflates (fflate's documented way to add a
 * compression: extend ZipPassThrough, which keeps the CRC-32 and size, and override `process`).
 * fflate's own streaming ZipDeflate sets up some 100 KB of state per entry, which made a
 * distribution twice as slow to zip. Push each entry's content whole, in one `push(data, true)`.
 */
class DeflatedAtOnce extends ZipPassThrough {
  constructor(filename: string) {
    super(filename);
    this.compression = 8;
  }

  override process(chunk: Uint8Array, final: boolean): void {
    this.ondata(null, deflateSync(chunk), final);
  }
}

/** An entry's deflated bytes with the size and CRC-32 of what they inflate to. */
interface DeflatedEntry {
  data: Uint8Array<ArrayBuffer>;
  size: number;
  crc: number;
}

function deflateEntry(content: Uint8Array): DeflatedEntry {
  const entry = new DeflatedAtOnce("");
  let data = new Uint8Array();
  entry.ondata = (err, chunk) => {
    if (err) throw err;
    data = chunk;
  };
  entry.push(content, true);
  return { data, size: entry.size, crc: entry.crc };
}

/**
 * flashlex.py deflated once per process: the same 41 KB in every distribution, and deflating it
 * was four fifths of each zip's time on the hub's one thread (`hub thing create`, bench row 7).
 */
let pythonModuleDeflated: DeflatedEntry | undefined;

/**
 * The distribution zip. `configText` is `renderThingConfig(values).text`, made here unless the
 * caller made it already (the hub lets other work run between the two, each a few ms). Entries
 * are deflated and carry their Unix modes; the zip is streamed by fflate (so each entry's sizes
 * follow it in a data descriptor, APPNOTE 4.3.9), which lets flashlex.py go in deflated once.
 */
export function buildDistribution(
  values: DistributionValues,
  keys: ThingKeys,
  mtime: Date = new Date(),
  configText: string = renderThingConfig(values).text,
): Uint8Array {
  const name = values.thingName;
  const files = keyFileNames(name);
  const parts: Uint8Array[] = [];
  const zip = new Zip((err, chunk) => {
    if (err) throw err;
    parts.push(chunk);
  });
  const add = (path: string, content: string, mode: number) => {
    const entry = Object.assign(new DeflatedAtOnce(`${name}/${path}`), unixFile(mode, mtime));
    zip.add(entry);
    entry.push(new TextEncoder().encode(content), true);
  };
  const addDeflated = (path: string, deflated: DeflatedEntry, mode: number) => {
    const entry: ZipInputFile = { filename: `${name}/${path}`, size: deflated.size, crc: deflated.crc, compression: 8, ...unixFile(mode, mtime) };
    zip.add(entry);
    entry.ondata!(null, deflated.data, true);
  };
  pythonModuleDeflated ??= deflateEntry(new TextEncoder().encode(PYTHON_MODULE));
  add("config.yml", configText, 0o644);
  add("README.md", renderReadme(values), 0o644);
  addDeflated(PYTHON_MODULE_FILE, pythonModuleDeflated, 0o644);
  add(`keys/${files.rootCA}`, keys.rootCaPem, 0o644);
  add(`keys/${files.cert}`, keys.certPem, 0o644);
  // The unzip tool restores this mode: the key is owner-only from the moment it lands.
  add(`keys/${files.privateKey}`, keys.privateKeyPem, 0o600);
  add(`keys/${files.publicKey}`, keys.publicKeyPem, 0o644);
  zip.end();
  return concat(parts);
}

function concat(parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, part) => n + part.byteLength, 0));
  let offset = 0;
  for (const part of parts) out.set(part, offset), (offset += part.byteLength);
  return out;
}
