import type { ThingConfig } from "../config/load.ts";
import { signThingToken } from "../crypto/jwt.ts";
import type { OutboxEntry } from "../store/message-store.ts";
import { postText, type PostResult } from "./http-post.ts";
import type { ThingIdentity } from "./identity.ts";
import { describeError, type ThingSession } from "./session.ts";

/** The largest JSON document `collect` accepts; the hub's default limit is the same. */
export const MAX_EGRESS_BYTES = 256 * 1024;

/** The header that carries the outbox message id, so the receiver stores a retried message once. */
export const MESSAGE_ID_HEADER = "X-Flashlex-Message-Id";

export type DeliveryOutcome =
  | { kind: "sent"; status?: number; body?: string }
  /** the receiver refused the message itself; retrying cannot help */
  | { kind: "rejected"; status: number; body: string; error: string }
  /** the receiver could not be reached or failed; try again later */
  | { kind: "retry"; error: string; status?: number };

export function collectUrl(config: ThingConfig): string {
  const { endpoint, env } = config.yaml.app.api;
  return `${endpoint.replace(/\/+$/, "")}/${env}/v1/things/${config.yaml.thing.id}/collect`;
}

/** POSTs one outbox entry to the collect API with a freshly signed JWT. */
export async function deliverHttp(
  entry: Pick<OutboxEntry, "message_id" | "body">,
  deps: { config: ThingConfig; identity: ThingIdentity; timeoutMs?: number },
): Promise<DeliveryOutcome> {
  const token = await signThingToken({ thingId: deps.identity.thingId, privateKey: deps.identity.privateKey });
  let response: PostResult;
  try {
    response = await postText(collectUrl(deps.config), {
      headers: {
        Authorization: `Bearer ${token}`,
        "Content-Type": "application/json",
        [MESSAGE_ID_HEADER]: entry.message_id,
      },
      body: entry.body,
      extraCaPem: deps.identity.caPem,
      timeoutMs: deps.timeoutMs ?? 30_000,
    });
  } catch (err) {
    return { kind: "retry", error: describeError(err) };
  }
  const { status, body } = response;
  if (status >= 200 && status < 300) return { kind: "sent", status, body };
  const error = `the API answered ${status} ${response.statusText}`.trim();
  // 408 and 429 say "later"; other 4xx say "never" (bad token, bad body) and would loop forever.
  if (status >= 400 && status < 500 && status !== 408 && status !== 429) {
    return { kind: "rejected", status, body, error };
  }
  return { kind: "retry", status, error };
}

/**
 * Publishes one outbox entry to the egress topic. The envelope carries the thing's JWT, so the
 * hub authenticates the message the same way as over HTTP even behind a broker that does not
 * tell it who published.
 */
export async function deliverMqtt(
  entry: Pick<OutboxEntry, "message_id" | "body">,
  deps: { config: ThingConfig; identity: ThingIdentity; session: ThingSession },
): Promise<DeliveryOutcome> {
  if (!deps.session.connected) return { kind: "retry", error: "not connected to the broker" };
  const token = await signThingToken({ thingId: deps.identity.thingId, privateKey: deps.identity.privateKey });
  const envelope = JSON.stringify({
    messageId: entry.message_id,
    thingId: deps.identity.thingId,
    token,
    payload: JSON.parse(entry.body),
  });
  try {
    await deps.session.publish(deps.config.yaml.thing.mqtt.egress.topic, envelope, 1);
    return { kind: "sent" };
  } catch (err) {
    return { kind: "retry", error: describeError(err) };
  }
}

/** Capped exponential backoff for outbox retries: 2 s, 4 s, … up to 5 minutes. */
export function retryDelayMs(attempts: number): number {
  return Math.min(300_000, 2000 * 2 ** Math.min(attempts, 10));
}
