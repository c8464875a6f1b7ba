import { createSecureContext } from "node:tls";
import { ConfigError } from "../../shared/errors.ts";
import { isTlsMaterialError, toFlashlexError } from "../../shared/foreign-errors.ts";
import type { ThingIdentity } from "../identity.ts";
import type { ThingConfig } from "../settings.ts";

/**
 * MQTT.js builds its TLS context when a session is created, and OpenSSL/BoringSSL then throws
 * text such as `error:0b000074:X.509 certificate routines:OPENSSL_internal:KEY_VALUES_MISMATCH`
 * that names no file. This turns such an error into a ConfigError (exit 78) naming the file at
 * fault, found by building a context from each file alone; any other error comes back as it was.
 * (The identity checks at load time catch most of these earlier; this is the net under them.)
 */
export function explainTlsSetupError(err: unknown, config: ThingConfig, identity: ThingIdentity): unknown {
  if (!isTlsMaterialError(err)) return err;
  const { paths } = config;
  const pieces: [string, string, Parameters<typeof createSecureContext>[0]][] = [
    [paths.rootCA, "root CA certificate", { ca: identity.caPem }],
    [paths.cert, "thing certificate", { cert: identity.certPem }],
    [paths.privateKey, "private key", { key: identity.keyPem }],
  ];
  for (const [file, what, options] of pieces) {
    try {
      createSecureContext(options);
    } catch (pieceErr) {
      const reason = toFlashlexError(pieceErr).message;
      return new ConfigError(`${file}: the ${what} cannot be used for TLS: ${reason}`, { cause: err });
    }
  }
  const reason = toFlashlexError(err).message;
  return new ConfigError(`${paths.privateKey} and ${paths.cert}: the key and certificate cannot be used together for TLS: ${reason}`, { cause: err });
}
