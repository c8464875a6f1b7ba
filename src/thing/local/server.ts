import { chmodSync, existsSync, unlinkSync } from "node:fs";
import { createServer, type IncomingMessage, type Server } from "node:http";
import { MAX_JSON_DEPTH, parseJsonDocument } from "../../protocol/limits.ts";
import { InputError, UsageError } from "../../shared/errors.ts";
import { toFlashlexError } from "../../shared/foreign-errors.ts";
import type { Logger } from "../../shared/log.ts";
import { parseEgressDocument } from "../egress/collect.ts";
import type { IngressQuery, OutboxState, ThingAccess } from "./access.ts";
import { type Answer, MAX_REQUEST_BYTES, ROUTES, socketPath, toWire, toWireOutbox } from "./wire.ts";

/**
 * Serve's control socket: a local HTTP endpoint on a Unix socket in the data directory
 * (owner-only), through which the other flashlex commands and the SDK reach a running `serve`
 * (client.ts). Only the serve that holds the data directory's lock (serve-lock.ts) listens
 * here, so a socket file it finds is a dead serve's and is replaced.
 *
 * Serves `access` (serve's own in-process access) on the routes of wire.ts; `status` answers
 * GET /v1/status. Resolves once listening; rejects with what listen(2) refused.
 */
export async function listenControlSocket(dataDir: string, access: ThingAccess, status: () => unknown, log: Logger): Promise<Server> {
  const path = socketPath(dataDir);
  if (existsSync(path)) unlinkSync(path); // left behind by a serve that was killed (we hold the lock)
  // Each route reads the body it was sent: the client (client.ts) is FlashLex's own code.
  // biome-ignore lint/suspicious/noExplicitAny: one table of handlers that each take their own body shape
  const routes: Record<string, (body: any) => unknown> = {
    [ROUTES.status]: () => status(),
    [ROUTES.listMessages]: async (query: IngressQuery) => (await access.listMessages(query)).map(toWire),
    [ROUTES.ackMessages]: ({ ids }: { ids: number[] }) => access.ackMessages(ids),
    [ROUTES.deleteMessages]: ({ ids }: { ids: number[] }) => access.deleteMessages(ids),
    [ROUTES.collect]: async ({ body, via = "http" }: { body: unknown; via?: unknown }) => {
      // Checked here as `collect` checks stdin: other clients (flashlex.py) send documents too.
      if (via !== "http" && via !== "mqtt") throw new UsageError(`via must be http or mqtt, not ${JSON.stringify(via)}`);
      const result = await access.collect(parseEgressDocument(typeof body === "string" ? body : "", "the collect request's body"), via);
      log.info("egress.collected", { messageId: result.messageId, via, outcome: result.outcome, status: result.status, error: result.error });
      return result;
    },
    [ROUTES.listOutbox]: async ({ state }: { state?: OutboxState }) => (await access.listOutbox(state)).map(toWireOutbox),
    [ROUTES.retryOutbox]: async ({ ids }: { ids: string[] }) => {
      const change = await access.retryOutbox(ids);
      if (change.changed.length) log.info("outbox.retried", { messageIds: change.changed.join(",") });
      return change;
    },
    [ROUTES.dropOutbox]: async ({ ids }: { ids: string[] }) => {
      const change = await access.dropOutbox(ids);
      if (change.changed.length) log.info("outbox.dropped", { messageIds: change.changed.join(",") });
      return change;
    },
  };
  const server = createServer((req, res) => {
    const send = (status: number, answer: Answer) => {
      res.writeHead(status, { "Content-Type": "application/json" });
      res.end(JSON.stringify(answer));
    };
    // One request never takes serve down: whatever a handler or an odd row throws becomes the
    // answer, and if even that cannot be written the connection is dropped and the error logged.
    const answer = async () => {
      const route = routes[`${req.method} ${req.url}`];
      if (!route) return send(404, { ok: false, error: `no route ${req.method} ${req.url}`, kind: "usage" });
      try {
        send(200, { ok: true, result: await route(await readJson(req)) });
      } catch (err) {
        const error = toFlashlexError(err);
        send(200, { ok: false, error: error.message, kind: error.kind });
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

/**
 * Stops listening and removes the socket file. Kept-alive connections are closed too: Bun keeps
 * answering on them after close(), and serve is about to close the database they would reach.
 */
export async function closeControlSocket(server: Server, dataDir: string): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeAllConnections();
  await closed;
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
    if (size > MAX_REQUEST_BYTES) throw new InputError(`request over the ${MAX_REQUEST_BYTES}-byte limit`);
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString("utf8");
  return text ? parseJsonDocument(text, { maxBytes: MAX_REQUEST_BYTES, maxDepth: MAX_JSON_DEPTH, source: "the request" }) : {};
}
