/**
 * What travels on serve's control socket (server.ts, client.ts): HTTP on a Unix socket in the
 * data directory, JSON bodies, one route per ThingAccess method. Every answer is
 * `{ok: true, result}` or `{ok: false, error, kind}`, `kind` being the error's kind
 * (src/shared/errors.ts), so the caller rebuilds the same error and exits as serve would have.
 */
import { join } from "node:path";
import type { ErrorKind } from "../../shared/errors.ts";
import type { IngressMessage, OutboxEntry } from "../store/message-store.ts";

export const SOCKET_NAME = "flashlex.sock";

/** The socket of the serve that holds `dataDir`. */
export function socketPath(dataDir: string): string {
  return join(dataDir, SOCKET_NAME);
}

/** The largest request body serve reads. */
export const MAX_REQUEST_BYTES = 1024 * 1024;

/** Routes, as `METHOD path`. */
export const ROUTES = {
  status: "GET /v1/status",
  listMessages: "POST /v1/messages/list",
  ackMessages: "POST /v1/messages/ack",
  deleteMessages: "POST /v1/messages/delete",
  collect: "POST /v1/collect",
  listOutbox: "POST /v1/outbox/list",
  retryOutbox: "POST /v1/outbox/retry",
  resendOutbox: "POST /v1/outbox/resend",
  dropOutbox: "POST /v1/outbox/drop",
} as const;

export type Answer<T = unknown> = { ok: true; result: T } | { ok: false; error: string; kind?: ErrorKind };

/** An ingress message as JSON: binary payloads travel as base64. */
export type WireMessage = Omit<IngressMessage, "payload"> & { payload?: string; payloadBase64?: string };

/** A text payload stays `payload`; a binary one becomes `payloadBase64`. */
export function toWire(message: IngressMessage): WireMessage {
  const { payload, ...rest } = message;
  return typeof payload === "string" ? { ...rest, payload } : { ...rest, payloadBase64: Buffer.from(payload).toString("base64") };
}

/** Back to the stored message: `payloadBase64` (or nothing) becomes a Uint8Array. Never throws. */
export function fromWire(message: WireMessage): IngressMessage {
  const { payload, payloadBase64, ...rest } = message;
  return { ...rest, payload: payload ?? new Uint8Array(Buffer.from(payloadBase64 ?? "", "base64")) };
}

/** An outbox entry as JSON: a body that is not text (a row another program wrote) travels as base64. */
export type WireOutboxEntry = Omit<OutboxEntry, "body"> & { body?: string; bodyBase64?: string };

/** A text body stays `body`; a Uint8Array becomes `bodyBase64`; anything else is written as its String(). */
export function toWireOutbox(entry: OutboxEntry): WireOutboxEntry {
  const { body, ...rest } = entry;
  const raw: unknown = body;
  if (typeof raw === "string") return { ...rest, body: raw };
  if (raw instanceof Uint8Array) return { ...rest, bodyBase64: Buffer.from(raw).toString("base64") };
  return { ...rest, body: String(raw) };
}

/** Back to the entry: `bodyBase64` becomes a Uint8Array, though OutboxEntry types `body` as a string. */
export function fromWireOutbox(entry: WireOutboxEntry): OutboxEntry {
  const { body, bodyBase64, ...rest } = entry;
  return { ...rest, body: body ?? (new Uint8Array(Buffer.from(bodyBase64 ?? "", "base64")) as unknown as string) };
}
