import type { ThingConfig } from "../settings.ts";

/**
 * What to change after a failed MQTT connect, when the connection's error code says it: nothing
 * listens on the address, the port answers without TLS (a web server such as the hub's API, or
 * a plain listener), the broker's certificate is for another name, or the root CA does not vouch
 * for it (another hub's broker). Each names the setting and the config file. `err` is the
 * connection's error or one whose `cause` it is (the one-shot session's). Undefined for any
 * other failure: the caller says what is generally worth checking. Used by bootstrap's FAIL and
 * by serve's `mqtt.error` line.
 */
export function connectFailureHint(err: unknown, config: ThingConfig): string | undefined {
  const { endpoint, mqtt } = config.yaml.thing;
  const address = `${endpoint}:${mqtt.port}`;
  const settings = `flashlex.thing.endpoint and flashlex.thing.mqtt.port in ${config.file}`;
  switch (connectErrorCode(err)) {
    case "ECONNREFUSED":
      return `Nothing listens on ${address}: start the broker (for the hub's own: flashlex hub serve), or correct ${settings}.`;
    case "ERR_SSL_WRONG_VERSION_NUMBER":
    case "ERR_SSL_PACKET_LENGTH_TOO_LONG":
    case "ERR_SSL_HTTP_REQUEST":
      return `Something answers on ${address}, but not with TLS (a web server, such as the hub's API, or a broker's listener without TLS): set flashlex.thing.mqtt.port in ${config.file} to the broker's TLS port (the hub's: broker.port in hub.yml, 8883 unless changed).`;
    case "ERR_TLS_CERT_ALTNAME_INVALID":
    case "HOSTNAME_MISMATCH":
      return `The broker's certificate is not issued for ${endpoint} (the error names what it is for): set flashlex.thing.endpoint in ${config.file} to one of its names, or give the hub that name (hub init --name).`;
    case "UNABLE_TO_VERIFY_LEAF_SIGNATURE":
    case "UNABLE_TO_GET_ISSUER_CERT_LOCALLY":
    case "SELF_SIGNED_CERT_IN_CHAIN":
    case "DEPTH_ZERO_SELF_SIGNED_CERT":
      return `The broker on ${address} shows a certificate that ${config.paths.rootCA} does not vouch for: it is another hub's or broker's; correct ${settings}, or use the root CA that came with this thing's distribution.`;
    default:
      return undefined;
  }
}

/** The code of a connection's error, or of the error it caused (the one-shot session's words); "" when neither has one. */
function connectErrorCode(err: unknown): string {
  const failure = err as { code?: unknown; cause?: { code?: unknown } } | null;
  return String(failure?.code ?? failure?.cause?.code ?? "");
}
