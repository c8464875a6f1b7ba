/**
 * Judges the thing's certificate chain exactly as the broker's TLS handshake will: by running
 * one. A TLS server on 127.0.0.1 (an ephemeral port) trusts only the thing's root CA file and
 * asks for a client certificate; the thing connects to it with its own certificate file (leaf
 * plus any intermediates, as it sends them to the broker) and key. The server's verdict,
 * `socket.authorized` / `authorizationError`, is OpenSSL's (BoringSSL's in Bun) own answer to
 * "would a broker with this CA file accept this client?": chains through intermediates, several
 * roots in one file, validity dates, key usage and extended key usage all included, with no
 * second implementation of path validation to drift from the real one.
 *
 * The server presents the thing's own certificate: the client does not verify it
 * (rejectUnauthorized: false on the client side only), so nothing else is needed. A few
 * milliseconds; nothing leaves the machine.
 */
import { connect, createServer, type TLSSocket } from "node:tls";

export type HandshakeVerdict =
  | { authorized: true }
  /** `code` is OpenSSL's name for the failure, e.g. UNABLE_TO_GET_ISSUER_CERT_LOCALLY, CERT_HAS_EXPIRED */
  | { authorized: false; code: string };

/**
 * Runs the loopback handshake. Takes the PEMs as the agent hands them to MQTT.js; resolves with
 * the verdict, rejects (with node's error) when no handshake could be made at all (a PEM the TLS
 * stack refuses, no loopback) or when nothing happens within `timeoutMs`.
 */
export function verifyByHandshake(identity: { caPem: string; certPem: string; keyPem: string }, timeoutMs = 5_000): Promise<HandshakeVerdict> {
  return new Promise((resolve, reject) => {
    let client: TLSSocket | undefined;
    const server = createServer({ ca: identity.caPem, cert: identity.certPem, key: identity.keyPem, requestCert: true, rejectUnauthorized: false });
    const finish = (outcome: { verdict?: HandshakeVerdict; error?: Error }) => {
      clearTimeout(timer);
      client?.destroy();
      server.close();
      if (outcome.verdict) resolve(outcome.verdict);
      else reject(outcome.error);
    };
    const timer = setTimeout(() => finish({ error: new Error(`no TLS handshake on loopback within ${timeoutMs} ms`) }), timeoutMs);
    server.on("secureConnection", (socket: TLSSocket) => {
      const error = socket.authorizationError as unknown;
      // node and Bun give the OpenSSL code as a string; an Error carrying it in `code` is accepted too.
      const code = typeof error === "string" ? error : ((error as { code?: string } | null)?.code ?? String(error));
      socket.destroy();
      finish({ verdict: socket.authorized ? { authorized: true } : { authorized: false, code } });
    });
    server.on("tlsClientError", (error) => finish({ error }));
    server.on("error", (error) => finish({ error }));
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      client = connect({ host: "127.0.0.1", port, cert: identity.certPem, key: identity.keyPem, rejectUnauthorized: false });
      // The server decides; whatever the client sees after that (a reset) is not news.
      client.on("error", () => {});
    });
  });
}
