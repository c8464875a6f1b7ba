import { readFileSync } from "node:fs";
import { FlashlexError } from "../../shared/errors.ts";
import type { HubHome } from "../home/home.ts";
import type { OperatorTokens } from "../home/tokens.ts";
import type { Envelope } from "./envelope.ts";

/**
 * How the hub's CLI, on the hub machine, talks to the running `hub serve` (for `hub send`, which
 * needs the broker that process holds), with a token of its own (OperatorTokens.withCliToken).
 */

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
    throw new FlashlexError(`the hub API at ${localApiUrl(home)} did not answer (${why}); is \`flashlex hub serve\` running?`, "unavailable");
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

/**
 * Sends `message` to thing `thingId` through the running hub (`POST /things/{id}/publish`): its
 * broker lives in that process. Uses a one-request token (OperatorTokens.withCliToken). Returns
 * the hub's answer, the API's envelope. Throws FlashlexError: unavailable when no hub answers or
 * it answers 503, bug for another 5xx, data for a refusal of the message (4xx).
 */
export async function publishThroughService(
  home: HubHome,
  operators: OperatorTokens,
  thingId: string,
  message: unknown,
): Promise<Envelope<{ flmessagespk: string; online: boolean | null }>> {
  const response = await operators.withCliToken((token) =>
    localRequest<{ flmessagespk: string; online: boolean | null }>(home, token, "POST", `/things/${thingId}/publish`, { message }),
  );
  if (response.status !== 200 || !response.body) {
    const why = response.body?.messages[0]?.value ?? `HTTP ${response.status}`;
    throw new FlashlexError(`the hub refused the message: ${why}`, response.status === 503 ? "unavailable" : response.status >= 500 ? "bug" : "data");
  }
  return response.body;
}
