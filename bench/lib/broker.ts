/**
 * Mosquitto for the bench: test/support's startMosquitto with the listener the tests use
 * (mutual TLS, the certificate CN as the username) but logging connections only. The tests'
 * `log_type all` writes two debug lines per message, which at tens of thousands of messages a
 * second costs the broker and fills the bench's memory with text nobody reads.
 */
import { type MosquittoBroker, startMosquitto } from "../../test/support/mosquitto.ts";

export interface BrokerCerts {
  dir: string;
  caFile: string;
  certFile: string;
  keyFile: string;
}

/** `extra`: listener lines, e.g. `max_queued_messages 100000`. */
export function startBenchBroker(certs: BrokerCerts, extra: string[] = []): Promise<MosquittoBroker> {
  return startMosquitto({
    ...certs,
    requireCertificate: true,
    renderConfig: (port, files) =>
      [
        "per_listener_settings true",
        "persistence false",
        "log_dest stderr",
        // "information" has "New client connected ... as <id>": the live rows wait for it
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        `listener ${port} 127.0.0.1`,
        `cafile ${files.caFile}`,
        `certfile ${files.certFile}`,
        `keyfile ${files.keyFile}`,
        "tls_version tlsv1.2",
        "require_certificate true",
        "use_identity_as_username true",
        "allow_anonymous false",
        ...extra,
        "",
      ].join("\n"),
  });
}

/** Resolves once the broker has logged a new connection from `clientId` after the first `from` characters of its log. */
export async function connected(broker: MosquittoBroker, clientId: string, from: number, timeoutMs = 15_000): Promise<void> {
  const needle = ` as ${clientId} (`;
  const deadline = Date.now() + timeoutMs;
  while (!broker.log().slice(from).includes(needle)) {
    if (Date.now() > deadline) throw new Error(`${clientId} did not connect to Mosquitto within ${timeoutMs} ms:\n${broker.log().slice(-2000)}`);
    await Bun.sleep(2);
  }
}
