/**
 * The old cloud's JSON envelope and the small HTTP helpers the API routes share. Every answer,
 * error or not, is `{status, code, messages: [{key, value}], result}` so a client parses one shape.
 */
import { JsonDocumentError, MAX_JSON_DEPTH, parseJsonDocument } from "../protocol/limits.ts";

export interface Envelope<T = unknown> {
  status: "OK" | "ERROR";
  code: number;
  messages: { key: string; value: string }[];
  result: T;
}

/** An error an API route answers with; the message is shown to the client, so it never holds a secret. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = "HttpError";
  }
}

export function ok<T>(result: T, message: string, status = 200): Response {
  const body: Envelope<T> = { status: "OK", code: status, messages: [{ key: "message", value: message }], result };
  return Response.json(body, { status });
}

export function errorResponse(status: number, message: string, headers: Record<string, string> = {}): Response {
  const body: Envelope<null> = { status: "ERROR", code: status, messages: [{ key: "error", value: message }], result: null };
  return Response.json(body, { status, headers });
}

export function fileResponse(bytes: Uint8Array, fileName: string, contentType = "application/zip"): Response {
  return new Response(bytes, {
    status: 200,
    headers: {
      "Content-Type": contentType,
      "Content-Disposition": `attachment; filename="${fileName}"`,
      "Content-Length": String(bytes.byteLength),
    },
  });
}

/** A download whose length is not known in advance (sent chunked). */
export function streamResponse(stream: ReadableStream<Uint8Array>, fileName: string, contentType = "application/zip"): Response {
  return new Response(stream, {
    status: 200,
    headers: { "Content-Type": contentType, "Content-Disposition": `attachment; filename="${fileName}"` },
  });
}

/** Refuses a body that is not `application/json` (any charset parameter is fine). */
export function requireJsonContentType(request: Request): void {
  const type = (request.headers.get("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
  if (type !== "application/json") throw new HttpError(415, "the body must be JSON (Content-Type: application/json)");
}

/**
 * Reads the body, stopping as soon as it passes `limit` bytes: a declared Content-Length over the
 * limit is refused before reading, and a lying or chunked one is cut off while streaming.
 */
export async function readBodyLimited(request: Request, limit: number): Promise<Uint8Array> {
  const tooLarge = () => new HttpError(413, `the body is larger than ${limit} bytes`);
  const declared = Number(request.headers.get("content-length") ?? NaN);
  if (Number.isFinite(declared) && declared > limit) throw tooLarge();
  if (!request.body) return new Uint8Array();
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = request.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => {});
      throw tooLarge();
    }
    chunks.push(value);
  }
  const body = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) (body.set(chunk, offset), (offset += chunk.byteLength));
  return body;
}

/**
 * Parses a JSON body within the protocol's limits (src/protocol/limits.ts): not valid UTF-8,
 * blank, not JSON, or nested deeper than `maxDepth` is a 400; over `maxBytes` a 413 (normally
 * caught earlier by readBodyLimited). The depth is checked before any recursive parsing.
 */
export function parseJsonBody(bytes: Uint8Array, limits: { maxDepth?: number; maxBytes?: number } = {}): unknown {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new HttpError(400, "the body is not valid UTF-8");
  }
  if (text.trim() === "") throw new HttpError(400, "the body is empty; send a JSON document");
  try {
    return parseJsonDocument(text, { maxDepth: limits.maxDepth ?? MAX_JSON_DEPTH, maxBytes: limits.maxBytes ?? bytes.byteLength, source: "the body" });
  } catch (err) {
    if (!(err instanceof JsonDocumentError)) throw err;
    if (err.problem === "too_large") throw new HttpError(413, err.message);
    if (err.problem === "too_deep") throw new HttpError(400, err.message);
    throw new HttpError(400, "the body is not valid JSON");
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(value: unknown): value is string {
  return typeof value === "string" && UUID.test(value);
}

/** A Unix-seconds query parameter, or undefined when absent. */
export function unixSecondsParam(params: URLSearchParams, name: string): number | undefined {
  const raw = params.get(name);
  if (raw === null || raw === "") return undefined;
  if (!/^\d{1,12}$/.test(raw)) throw new HttpError(400, `${name} must be Unix seconds (a non-negative integer)`);
  return Number(raw);
}
