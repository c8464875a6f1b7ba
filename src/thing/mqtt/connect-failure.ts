import type { ThingConfig } from "../settings.ts";

/**
 * What to change after a failed MQTT connect, when the connection's error says it: nothing
 * listens on the address, the name does not resolve, the port answers without TLS (a web server
 * such as the hub's API, or a plain listener that resets the handshake), it speaks TLS but not
 * MQTT (an HTTPS server), nothing answers in time, the broker's certificate is for another name,
 * or the root CA does not vouch for it (another hub's CA file, or another hub's broker), or it is
 * not valid by the device's clock (expired, or not yet valid: a clock that is behind). Each
 * names the setting and the config file. `err` is the connection's error or one whose `cause` it
 * is (the one-shot session's). Undefined for any other failure: the caller says what is generally
 * worth checking. Used by bootstrap's FAIL and by serve's `mqtt.error` line, for failures before
 * a CONNACK.
 *
 * `connectedBefore`: a connection with these settings was accepted earlier (serve, after a
 * network blip or a broker restart). The address then worked, so the hints that blame it (nothing
 * listens, no TLS, a reset, no answer) would send the owner to change what is right: only those
 * about certificates and the clock are given.
 */
export function connectFailureHint(err: unknown, config: ThingConfig, connectedBefore = false): string | undefined {
  const { endpoint, mqtt } = config.yaml.thing;
  const address = `${endpoint}:${mqtt.port}`;
  const settings = `flashlex.thing.endpoint and flashlex.thing.mqtt.port in ${config.file}`;
  const toTlsPort = `set flashlex.thing.mqtt.port in ${config.file} to the broker's TLS port (the hub's: broker.port in hub.yml, 8883 unless changed)`;
  const { code, message } = connectError(err);
  switch (code) {
    case "CERT_HAS_EXPIRED":
      return `The broker's certificate on ${address}, or the hub's CA it is checked against (${config.paths.rootCA}), has expired by this device's clock: if the clock is wrong, set it (enable NTP: sudo timedatectl set-ntp true); if it is right, the hub needs a new certificate, or, when its CA ended, the thing a new distribution from a hub with a new CA.`;
    case "CERT_NOT_YET_VALID":
      return `The broker's certificate on ${address} is not valid yet by this device's clock, which is probably behind (a board without a real-time clock starts in the past until NTP sets it): enable NTP (sudo timedatectl set-ntp true) or set the date.`;
  }
  if (connectedBefore) return certificateHint(code, address, endpoint, settings, config);
  switch (code) {
    case "ECONNREFUSED":
      return `Nothing listens on ${address}: start the broker (for the hub's own: flashlex hub serve), or correct ${settings}.`;
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return `${endpoint} does not resolve to an address: correct flashlex.thing.endpoint in ${config.file}, or the device's network and DNS.`;
    case "ERR_SSL_WRONG_VERSION_NUMBER":
    case "ERR_SSL_PACKET_LENGTH_TOO_LONG":
    case "ERR_SSL_HTTP_REQUEST":
      return `Something answers on ${address}, but not with TLS (a web server, such as the hub's API, or a broker's listener without TLS): ${toTlsPort}.`;
    case "ECONNRESET":
      return `${address} reset the connection before the broker answered: it may be a listener without TLS (MQTT's plain port, 1883) or something else than the broker; ${toTlsPort}.`;
  }
  if (code) return certificateHint(code, address, endpoint, settings, config); // else a CONNACK refusal's number, a TLS alert: it says it itself
  // MQTT.js's own words, without a code: its packet parser met bytes that are not MQTT, or no CONNACK came
  if (/header flag|packet|protocol|malformed/i.test(message)) {
    return `Something on ${address} speaks TLS but not MQTT (an HTTPS server, such as the hub's API served over HTTPS): ${toTlsPort}.`;
  }
  if (message === "connack timeout" || message.startsWith("no MQTT connection within")) {
    return `Nothing answered MQTT on ${address} in time: check that it is the broker's TLS port, and that no firewall drops the traffic (correct ${settings}).`;
  }
  return undefined;
}

/** The fix for a broker certificate the thing does not accept (another name, another CA), else undefined. */
function certificateHint(code: string, address: string, endpoint: string, settings: string, config: ThingConfig): string | undefined {
  switch (code) {
    case "ERR_TLS_CERT_ALTNAME_INVALID":
    case "HOSTNAME_MISMATCH":
      return `The broker's certificate is not issued for ${endpoint} (the error names what it is for): set flashlex.thing.endpoint in ${config.file} to one of its names, or have the hub's operator add ${endpoint} to hub.yml broker.names and restart hub serve (it issues the certificate again for them).`;
    case "UNABLE_TO_VERIFY_LEAF_SIGNATURE":
    case "UNABLE_TO_GET_ISSUER_CERT_LOCALLY":
    case "SELF_SIGNED_CERT_IN_CHAIN":
    case "DEPTH_ZERO_SELF_SIGNED_CERT":
      return `The broker on ${address} shows a certificate that ${config.paths.rootCA} does not vouch for: that file may be another hub's (use the root CA that came with this thing's distribution), or ${address} is another hub's or broker's (correct ${settings}).`;
  }
  return undefined;
}

/** The code and message of a connection's error, or of the error it caused (the one-shot session's words). */
function connectError(err: unknown): { code: string; message: string } {
  const failure = err as { code?: unknown; message?: unknown; cause?: { code?: unknown; message?: unknown } } | null;
  const cause = failure?.cause;
  return {
    code: String(failure?.code ?? cause?.code ?? ""),
    message: String(cause?.message ?? failure?.message ?? ""),
  };
}
