import { chmodSync, unlinkSync } from "node:fs";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import { decodeUtf8, MAX_JSON_DEPTH, parseJsonDocument } from "../../protocol/limits.ts";
import { InputError, UsageError } from "../../shared/errors.ts";
import { toFlashlexError } from "../../shared/foreign-errors.ts";
import type { Logger } from "../../shared/log.ts";
import { pathExists } from "../../shared/path-exists.ts";
import { isoOrAsIs } from "../../shared/time.ts";
import { parseEgressDocument } from "../egress/document.ts";
import type { IngressMessage, IngressQuery, OutboxEntry, OutboxPage, OutboxState, ThingAccess } from "./access.ts";
import { checkIngressQuery, checkOutboxPage, checkOutboxState, checkVia, refuseUnknownFields, withCheckedArguments } from "./arguments.ts";
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
  if (pathExists(path)) unlinkSync(path); // left behind by a serve that was killed (we hold the lock)
  // Every route's arguments are checked by the one wrapper the commands and the SDK use too
  // (arguments.ts), whoever the client is (flashlex.py sends its own bodies).
  const checked = withCheckedArguments(access);
  const routes: Record<string, (body: unknown) => unknown> = {
    [ROUTES.status]: () => status(),
    [ROUTES.listMessages]: (query) => pagedMessages(checked, checkIngressQuery(query)),
    [ROUTES.ackMessages]: (body) => checked.ackMessages(fields(body, ["ids"], "the ack request").ids as number[]),
    [ROUTES.deleteMessages]: (body) => checked.deleteMessages(fields(body, ["ids"], "the delete request").ids as number[]),
    [ROUTES.collect]: async (request) => {
      const { body, via } = fields(request, ["body", "via"], "the collect request");
      const checkedVia = checkVia(via);
      // Checked here as `collect` checks stdin: other clients (flashlex.py) send documents too.
      // The document travels as JSON text: an object there was reported as an empty body. (None
      // at all is an empty document, 65, as an empty stdin is.)
      if (body !== undefined && body !== null && typeof body !== "string") {
        throw new UsageError(`the collect request's body must be the document as JSON text (a string), not ${Array.isArray(body) ? "an array" : typeof body}`);
      }
      // a leading byte order mark is dropped, as collect drops it from stdin
      const text = typeof body === "string" ? body.replace(/^\uFEFF/, "") : "";
      const result = await checked.collect(parseEgressDocument(text, "the collect request's body"), checkedVia);
      log.info("egress.collected", { messageId: result.messageId, via: checkedVia, outcome: result.outcome, status: result.status, error: result.error });
      return result;
    },
    [ROUTES.listOutbox]: (body) => {
      const { state, after, limit } = fields(body, ["state", "after", "limit"], "the outbox list request");
      return pagedOutbox(checked, checkOutboxState(state), checkOutboxPage({ after, limit }));
    },
    [ROUTES.retryOutbox]: async (body) => {
      const change = await checked.retryOutbox(fields(body, ["ids"], "the retry request").ids as string[]);
      if (change.changed.length) log.info("outbox.retried", { messageIds: change.changed.join(",") });
      return change;
    },
    [ROUTES.resendOutbox]: async (body) => {
      const { sentSince } = fields(body, ["sentSince"], "the resend request");
      const change = await checked.resendOutbox(sentSince as number);
      // a count, not the ids: a day of a chatty thing's egress is tens of thousands
      if (change.changed.length) log.info("outbox.resent", { count: change.changed.length, sentSince: isoOrAsIs(sentSince) });
      return change;
    },
    [ROUTES.dropOutbox]: async (body) => {
      const change = await checked.dropOutbox(fields(body, ["ids"], "the drop request").ids as string[]);
      if (change.changed.length) log.info("outbox.dropped", { messageIds: change.changed.join(",") });
      return change;
    },
  };
  const { createServer } = await import("node:http");
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
        const result = await route(await readJson(req));
        if (result instanceof PagedAnswer) return await result.writeTo(res);
        send(200, { ok: true, result });
      } catch (err) {
        // a list that failed after its first page has no answer left to change: the connection
        // is dropped with the failure itself in the log (not "Cannot writeHead headers ...")
        if (res.headersSent) throw err;
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
 * The most rows serve holds at once while it answers a list: a message or an outbox body may be
 * 256 KiB, so a page is a few MiB whatever the backlog. A list without a limit (the SDKs ask for
 * every unacknowledged message) was built whole: 2,000 messages of 100 KB took serve to 1.4 GB.
 */
const LIST_PAGE_ROWS = 16;

/**
 * A list answer written a page of rows at a time, each page once the socket took the one before
 * (the same `{ok: true, result: [...]}` a client reads whole). `next(last, limit)` reads the
 * page after the row `last`. A failure after the first page cannot change the answer any more:
 * the connection is dropped, and the client's read fails.
 */
class PagedAnswer<Row> {
  constructor(
    readonly first: Row[],
    private readonly next: (last: Row, limit: number) => Promise<Row[]>,
    private readonly toJson: (row: Row) => unknown,
    private readonly limit?: number,
  ) {}

  async writeTo(res: ServerResponse): Promise<void> {
    res.writeHead(200, { "Content-Type": "application/json" });
    let page = this.first;
    let written = 0;
    let separator = "";
    await sent(res, '{"ok":true,"result":[');
    for (;;) {
      for (const row of page) {
        if (res.destroyed) return; // the client went away: nobody to answer
        await sent(res, separator + JSON.stringify(this.toJson(row)));
        separator = ",";
      }
      written += page.length;
      const wanted = this.limit === undefined ? LIST_PAGE_ROWS : Math.min(LIST_PAGE_ROWS, this.limit - written);
      if (page.length < LIST_PAGE_ROWS || wanted <= 0) break;
      page = await this.next(page[page.length - 1]!, wanted);
    }
    res.end("]}");
  }
}

/** Resolves once the socket took `chunk` (or the connection closed): what serve holds of an answer stays a row. */
function sent(res: ServerResponse, chunk: string): Promise<void> {
  if (res.write(chunk)) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      res.off("drain", done);
      res.off("close", done);
      resolve();
    };
    res.once("drain", done);
    res.once("close", done);
  });
}

/** The rows `query` names, read LIST_PAGE_ROWS at a time (by id, as the store orders them). The first page is read here, so a refusal is still an answer of its own. */
async function pagedMessages(access: ThingAccess, query: IngressQuery): Promise<PagedAnswer<IngressMessage>> {
  const page = (afterId: number | undefined, limit: number) => access.listMessages({ ...query, afterId, limit });
  const first = await page(query.afterId, query.limit === undefined ? LIST_PAGE_ROWS : Math.min(LIST_PAGE_ROWS, query.limit));
  return new PagedAnswer(first, (last, limit) => page(last.id, limit), toWire, query.limit);
}

/** The outbox entries `state` and `from` name, read LIST_PAGE_ROWS at a time in the outbox's order; the first page here, as for messages. */
async function pagedOutbox(access: ThingAccess, state: OutboxState | undefined, from: OutboxPage = {}): Promise<PagedAnswer<OutboxEntry>> {
  const page = (after: OutboxPage["after"], limit: number) => access.listOutbox(state, { after, limit });
  const first = await page(from.after, from.limit === undefined ? LIST_PAGE_ROWS : Math.min(LIST_PAGE_ROWS, from.limit));
  return new PagedAnswer(first, (last, limit) => page({ createdAt: last.created_at, messageId: last.message_id }, limit), toWireOutbox, from.limit);
}

/**
 * A request body's fields: `body` must be absent (null) or an object with no field but `names`,
 * as the message query is (arguments.ts): a field a client misspelt or this serve does not know
 * would otherwise be read as absent, and "all" answered for what meant less. Throws UsageError
 * naming `what` and the field.
 */
function fields(body: unknown, names: readonly string[], what: string): Record<string, unknown> {
  if (body === null || body === undefined) return {};
  if (typeof body !== "object" || Array.isArray(body)) throw new UsageError(`${what} must be an object, not ${Array.isArray(body) ? "an array" : typeof body}`);
  refuseUnknownFields(body, names, what);
  return body as Record<string, unknown>;
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
  // strict, as collect reads stdin: a bad byte was sent on as U+FFFD (attack round 27, F7)
  const text = decodeUtf8(Buffer.concat(chunks), "the request", "nothing was done");
  return text ? parseJsonDocument(text, { maxBytes: MAX_REQUEST_BYTES, maxDepth: MAX_JSON_DEPTH, source: "the request" }) : {};
}
