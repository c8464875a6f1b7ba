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

import { type ZipOptions, zipSync } from "fflate";
import { parse } from "yaml";
import configTemplate from "../../../dist-template/config.yml" with { type: "text" };
import pythonModule from "../../../dist-template/flashlex.py" with { type: "text" };
import readmeTemplate from "../../../dist-template/README.md" with { type: "text" };
import { type ThingYaml, ThingYamlSchema } from "../../protocol/thing-config.ts";
import { ConfigError } from "../../shared/errors.ts";
import { COMMIT } from "../../shared/version.ts";
import { PLAIN_YAML_VALUE } from "../home/settings.ts";

export const CONFIG_TEMPLATE: string = configTemplate;
export const README_TEMPLATE: string = readmeTemplate;
/** dist-template/flashlex.py: no placeholders, shipped byte for byte */
export const PYTHON_MODULE: string = pythonModule;

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
      throw new ConfigError(`hub.yml: ${setting}: ${JSON.stringify(text)} cannot go into a distribution's config.yml unquoted`);
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

export function renderReadme(values: DistributionValues): string {
  return renderTemplate(README_TEMPLATE, templateValues(values), false);
}

const FILE = (mode: number): ZipOptions => ({ os: 3, attrs: ((0o100000 | mode) << 16) >>> 0 }) as ZipOptions;

/**
 * The distribution zip. `configText` is `renderThingConfig(values).text`, made here unless the
 * caller made it already (the hub lets other work run between the two, each a few ms).
 */
export function buildDistribution(
  values: DistributionValues,
  keys: ThingKeys,
  mtime: Date = new Date(),
  configText: string = renderThingConfig(values).text,
): Uint8Array {
  const name = values.thingName;
  const files = keyFileNames(name);
  const text = (s: string) => new TextEncoder().encode(s);
  const entry = (content: string, mode: number): [Uint8Array, ZipOptions] => [text(content), { ...FILE(mode), mtime }];
  return zipSync({
    [`${name}/config.yml`]: entry(configText, 0o644),
    [`${name}/README.md`]: entry(renderReadme(values), 0o644),
    [`${name}/flashlex.py`]: entry(PYTHON_MODULE, 0o644),
    [`${name}/keys/${files.rootCA}`]: entry(keys.rootCaPem, 0o644),
    [`${name}/keys/${files.cert}`]: entry(keys.certPem, 0o644),
    // The unzip tool restores this mode: the key is owner-only from the moment it lands.
    [`${name}/keys/${files.privateKey}`]: entry(keys.privateKeyPem, 0o600),
    [`${name}/keys/${files.publicKey}`]: entry(keys.publicKeyPem, 0o644),
  });
}
