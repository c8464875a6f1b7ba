import { chmodSync, existsSync, unlinkSync } from "node:fs";
import { createServer, request, type IncomingMessage, type Server } from "node:http";
import { join } from "node:path";
import { ExitCode, FlashlexError, toFlashlexError, UsageError } from "../errors.ts";
import type { IngressMessage, IngressQuery, OutboxEntry } from "../store/message-store.ts";
import type { Logger } from "../log.ts";
import { MAX_JSON_DEPTH, parseJsonDocument } from "../protocol/limits.ts";
import type { OutboxState, ThingAccess } from "./access.ts";
import { parseEgressDocument } from "./collect.ts";

/**
 * A local HTTP endpoint on a Unix socket in the data directory (owner-only), through which
 * the other flashlex commands and the SDK reach a running `serve` (see access.ts). Only the
 * serve that holds the data directory's lock (serve-lock.ts) listens here, so a socket file it
 * finds is a dead serve's and is replaced. Every answer is `{ok: true, result}` or
 * `{ok: false, error, kind, exitCode}` (src/errors.ts).
 */
export const SOCKET_NAME = "flashlex.sock";
const MAX_REQUEST_BYTES = 1024 * 1024;

export function socketPath(dataDir: string): string {
  return join(dataDir, SOCKET_NAME);
}

export async function listenControlSocket(dataDir: string, access: ThingAccess, status: () => unknown, log: Logger): Promise<Server> {
  const path = socketPath(dataDir);
  if (existsSync(path)) unlinkSync(path); // left behind by a serve that was killed (we hold the lock)
  const routes: Record<string, (body: any) => unknown> = {
    "GET /v1/status": () => status(),
    "POST /v1/messages/list": async (query: IngressQuery) => (await access.listMessages(query)).map(toWire),
    "POST /v1/messages/ack": ({ ids }: { ids: number[] }) => access.ackMessages(ids),
    "POST /v1/messages/delete": ({ ids }: { ids: number[] }) => access.deleteMessages(ids),
    "POST /v1/collect": async ({ body, via = "http" }: { body: unknown; via?: unknown }) => {
      // Checked here as `collect` checks stdin: other clients (flashlex.py) send documents too.
      if (via !== "http" && via !== "mqtt") throw new UsageError(`via must be http or mqtt, not ${JSON.stringify(via)}`);
      const result = await access.collect(parseEgressDocument(typeof body === "string" ? body : "", "the collect request's body"), via);
      log.info("egress.collected", { messageId: result.messageId, via, outcome: result.outcome, status: result.status, error: result.error });
      return result;
    },
    "POST /v1/outbox/list": async ({ state }: { state?: OutboxState }) => (await access.listOutbox(state)).map(toWireOutbox),
    "POST /v1/outbox/retry": async ({ ids }: { ids: string[] }) => {
      const change = await access.retryOutbox(ids);
      if (change.changed.length) log.info("outbox.retried", { messageIds: change.changed.join(",") });
      return change;
    },
    "POST /v1/outbox/drop": async ({ ids }: { ids: string[] }) => {
      const change = await access.dropOutbox(ids);
      if (change.changed.length) log.info("outbox.dropped", { messageIds: change.changed.join(",") });
      return change;
    },
  };
  const server = createServer((req, res) => {
    const send = (status: number, answer: unknown) => {
      res.writeHead(status, { "Content-Type": "application/json" });
      res.end(JSON.stringify(answer));
    };
    // One request never takes serve down: whatever a handler or an odd row throws becomes the
    // answer, and if even that cannot be written the connection is dropped and the error logged.
    const answer = async () => {
      const route = routes[`${req.method} ${req.url}`];
      if (!route) return send(404, { ok: false, error: `no route ${req.method} ${req.url}`, exitCode: ExitCode.USAGE });
      try {
        send(200, { ok: true, result: await route(await readJson(req)) });
      } catch (err) {
        const error = toFlashlexError(err);
        send(200, { ok: false, error: error.message, kind: error.kind, exitCode: error.exitCode });
      }
    };
    answer().catch((err) => {
      log.error("control.request_failed", { route: `${req.method} ${req.url}`, error: (err as Error)?.message ?? String(err) });
      res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => resolve());
  });
  chmodSync(path, 0o600);
  return server;
}

export async function closeControlSocket(server: Server, dataDir: string): Promise<void> {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  try {
    unlinkSync(socketPath(dataDir));
  } catch {
    // already gone
  }
}

/**
 * The request body as JSON, within MAX_REQUEST_BYTES and the protocol's depth limit (its egress
 * document travels as a string inside, checked by the collect route). Chunks are joined as
 * bytes before decoding, so a character split between two chunks stays whole. Throws
 * InputError (exit 65) for a body that is too large, too deep or not JSON.
 */
async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_REQUEST_BYTES) throw new FlashlexError(`request over the ${MAX_REQUEST_BYTES}-byte limit`, ExitCode.DATA);
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString("utf8");
  return text ? parseJsonDocument(text, { maxBytes: MAX_REQUEST_BYTES, maxDepth: MAX_JSON_DEPTH, source: "the request" }) : {};
}

export function serveIsRunning(dataDir: string): Promise<boolean> {
  if (!existsSync(socketPath(dataDir))) return Promise.resolve(false);
  return callServe(dataDir, "GET", "/v1/status").then(
    () => true,
    () => false,
  );
}

/**
 * Calls the running serve; rejects when none answers (no socket, or a stale one). Long
 * requests (a collect waiting for its API) are bounded by serve's own timeouts.
 */
export function callServe(dataDir: string, method: "GET" | "POST", path: string, body?: unknown): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: socketPath(dataDir), method, path, headers: { "Content-Type": "application/json" } }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk) => (text += chunk));
      res.on("end", () => {
        try {
          resolve(JSON.parse(text));
        } catch (err) {
          reject(err);
        }
      });
    });
    req.setTimeout(method === "GET" ? 2000 : 120_000, () => req.destroy(new Error("the running serve did not answer")));
    req.on("error", reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

/** An ingress message as JSON: binary payloads travel as base64. */
export type WireMessage = Omit<IngressMessage, "payload"> & { payload?: string; payloadBase64?: string };

export function toWire(message: IngressMessage): WireMessage {
  const { payload, ...rest } = message;
  return typeof payload === "string" ? { ...rest, payload } : { ...rest, payloadBase64: Buffer.from(payload).toString("base64") };
}

export function fromWire(message: WireMessage): IngressMessage {
  const { payload, payloadBase64, ...rest } = message;
  return { ...rest, payload: payload ?? new Uint8Array(Buffer.from(payloadBase64 ?? "", "base64")) };
}

/** An outbox entry as JSON: a body that is not text (a row another program wrote) travels as base64. */
export type WireOutboxEntry = Omit<OutboxEntry, "body"> & { body?: string; bodyBase64?: string };

export function toWireOutbox(entry: OutboxEntry): WireOutboxEntry {
  const { body, ...rest } = entry;
  const raw: unknown = body;
  if (typeof raw === "string") return { ...rest, body: raw };
  if (raw instanceof Uint8Array) return { ...rest, bodyBase64: Buffer.from(raw).toString("base64") };
  return { ...rest, body: String(raw) };
}

export function fromWireOutbox(entry: WireOutboxEntry): OutboxEntry {
  const { body, bodyBase64, ...rest } = entry;
  return { ...rest, body: body ?? (new Uint8Array(Buffer.from(bodyBase64 ?? "", "base64")) as unknown as string) };
}
