/**
 * A collect API stand-in for the thing agent's tests: a real HTTP server on loopback that
 * verifies each request's JWT with the thing's public key using jose directly (not our own
 * verifier, so a bug there cannot hide one in the signer) and records what it got.
 */
import { createPublicKey } from "node:crypto";
import { decodeProtectedHeader, jwtVerify } from "jose";

export interface Received {
  messageId: string | null;
  body: unknown;
  claims: Record<string, unknown>;
  header: Record<string, unknown>;
}

export interface Receiver {
  url: string;
  port: number;
  received: Received[];
  /** requests refused, with the reason */
  refused: string[];
  /**
   * runs after a request is verified (and recorded, unless answerStatus refuses it; its body is
   * then not read), before it is answered: e.g. to fill a disk meanwhile
   */
  beforeAnswer?: (received: Received) => void | Promise<void>;
  /**
   * When set, an authenticated request is answered with this status (and the envelope) and not
   * stored: a receiver that refuses the content (413, 422, ...) or is in trouble (503).
   */
  answerStatus?: number;
  stop(): Promise<void>;
}

export async function startReceiver(opts: { thingId: string; publicKeyPem: string; port?: number }): Promise<Receiver> {
  const publicKey = createPublicKey(opts.publicKeyPem);
  // The algorithm follows from the thing's key, as the hub's does: RS256 for RSA, ES256/ES384 for EC.
  const curve = publicKey.asymmetricKeyDetails?.namedCurve;
  const algorithm = publicKey.asymmetricKeyType === "ec" ? (curve === "secp384r1" ? "ES384" : "ES256") : "RS256";
  const received: Received[] = [];
  const refused: string[] = [];
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: opts.port ?? 0,
    async fetch(request) {
      const url = new URL(request.url);
      if (request.method !== "POST" || url.pathname !== `/dev/v1/things/${opts.thingId}/collect`) {
        refused.push(`route ${request.method} ${url.pathname}`);
        return Response.json({ status: "ERROR", code: 404 }, { status: 404 });
      }
      const token = request.headers.get("authorization")?.replace(/^Bearer /, "") ?? "";
      try {
        const header = decodeProtectedHeader(token);
        if (header.kid !== opts.thingId || header.typ !== "JWT") throw new Error(`header ${JSON.stringify(header)}`);
        const { payload } = await jwtVerify(token, publicKey, {
          algorithms: [algorithm],
          issuer: `urn:thing:${opts.thingId}`,
          audience: `urn:flashlex:${opts.thingId}`,
        });
        if (payload.exp! - payload.nbf! !== 720) throw new Error(`lifetime ${payload.exp! - payload.nbf!}`);
        const messageId = request.headers.get("x-flashlex-message-id");
        if (receiver.answerStatus) {
          refused.push(`answered ${receiver.answerStatus}`);
          await receiver.beforeAnswer?.({ messageId, body: undefined, claims: payload as Record<string, unknown>, header: header as Record<string, unknown> });
          return Response.json(
            { status: "ERROR", code: receiver.answerStatus, messages: [{ key: "message", value: "refused by the test" }] },
            { status: receiver.answerStatus },
          );
        }
        const body = await request.json();
        const entry = { messageId, body, claims: payload as Record<string, unknown>, header: header as Record<string, unknown> };
        received.push(entry);
        await receiver.beforeAnswer?.(entry);
        const result = { message: "Message collected.", flthingspk: opts.thingId, flmessagespk: messageId };
        return Response.json({ status: "OK", code: 200, messages: [{ key: "message", value: "Message collected." }], result });
      } catch (err) {
        refused.push((err as Error).message);
        return Response.json({ status: "ERROR", code: 401 }, { status: 401 });
      }
    },
  });
  const receiver: Receiver = {
    url: `http://127.0.0.1:${server.port}`,
    port: server.port!,
    received,
    refused,
    stop: async () => void (await server.stop(true)),
  };
  return receiver;
}
