import { readFileSync } from "node:fs";
import { ExitCode, FlashlexError } from "../../shared/errors.ts";
import type { HubHome } from "../home/home.ts";
import type { HubStore } from "../store/hub-store.ts";
import type { Envelope } from "./envelope.ts";
import { hashToken, newAccessToken } from "../home/tokens.ts";

/**
 * How the hub's CLI, on the hub machine, talks to the running `hub serve` (for `hub send`, which
 * needs the broker that process holds).
 *
 * The operator token is not stored anywhere in readable form, so the CLI mints its own: a fresh
 * token whose hash goes into the database with a one-minute expiry, used for one request and
 * deleted right after. Whoever can write the hub home can do this, and could do far more anyway.
 */
const CLI_TOKEN_TTL_MS = 60_000;

export async function withCliToken<T>(store: HubStore, fn: (token: string) => Promise<T>): Promise<T> {
  const token = newAccessToken();
  const hash = hashToken(token);
  const now = Date.now();
  await store.addToken(hash, "cli", now, now + CLI_TOKEN_TTL_MS);
  try {
    return await fn(token);
  } finally {
    await store.deleteToken(hash);
  }
}

/** The URL this machine reaches the API at: the listen address, with a wildcard made loopback. */
export function localApiUrl(home: HubHome): string {
  const { host, port, tls } = home.settings.api;
  const local = host === "0.0.0.0" || host === "" ? "127.0.0.1" : host === "::" ? "::1" : host;
  const hostPart = local.includes(":") ? `[${local}]` : local;
  return `${tls ? "https" : "http"}://${hostPart}:${port}/${home.settings.env}/v1`;
}

export interface LocalResponse<T> {
  status: number;
  body: Envelope<T> | undefined;
}

/**
 * One request to the running hub. With TLS the hub CA is trusted but the name is not checked:
 * the request goes to a loopback address, which the certificate need not name.
 */
export async function localRequest<T>(home: HubHome, token: string, method: string, path: string, body?: unknown): Promise<LocalResponse<T>> {
  const url = `${localApiUrl(home)}${path}`;
  const init: RequestInit & { tls?: unknown } = {
    method,
    headers: { Authorization: `Bearer ${token}`, ...(body === undefined ? {} : { "Content-Type": "application/json" }) },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  };
  if (home.settings.api.tls) init.tls = { ca: readFileSync(home.paths.caCert, "utf8"), checkServerIdentity: () => undefined };
  let response: Response;
  try {
    response = await fetch(url, init);
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new FlashlexError(`the hub API at ${localApiUrl(home)} did not answer (${why}); is \`flashlex hub serve\` running?`, ExitCode.UNAVAILABLE);
  }
  const text = await response.text();
  let parsed: Envelope<T> | undefined;
  try {
    parsed = JSON.parse(text) as Envelope<T>;
  } catch {
    parsed = undefined;
  }
  return { status: response.status, body: parsed };
}
