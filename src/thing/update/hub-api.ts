/**
 * The thing's side of the hub's update routes (src/hub/http/update-routes.ts): poll, report,
 * and the URL of a binary; each request carries a freshly signed thing JWT, as collect does.
 */
import { signThingToken } from "../../crypto/jwt.ts";
import { FlashlexError } from "../../shared/errors.ts";
import { requestText } from "../egress/http-post.ts";
import { answerRefusal, type HubClock, sendWithHubTime } from "../egress/hub-clock.ts";
import type { ThingIdentity } from "../identity.ts";
import type { ThingConfig } from "../settings.ts";

export interface OfferedUpdate {
  version: string;
  /** the manifest's signed bytes, as text */
  manifest: string;
  signature: string;
}

export type ReportState = "downloading" | "installed" | "healthy" | "rolled-back" | "failed";

export interface UpdateHubApi {
  /** `outbox`: entries waiting and the oldest one's age in whole seconds, for the hub's /metrics (docs/metrics.md) */
  poll(running: { version: string; target: string; outbox?: { depth: number; oldestAgeSeconds: number } }): Promise<OfferedUpdate | undefined>;
  report(report: { state: ReportState; version: string; running: string; detail?: string }): Promise<void>;
  binaryUrl(version: string, target: string): string;
  /** an Authorization header with a fresh token */
  authorization(): Promise<Record<string, string>>;
  caPem: string;
}

/**
 * The hub's update routes for this thing (`ENDPOINT/ENV/v1/things/ID/update`), each request
 * bounded by `timeoutMs` (ms) and its token signed on `clock` (serve's: a device clock found
 * wrong costs one refused request, as for collect). `poll` and `report` reject with a plain Error for a status other
 * than 200 or 201, FlashlexError (unavailable) for an answer not a hub's, and requestText's errors.
 */
export function updateHubApi(config: ThingConfig, identity: ThingIdentity, timeoutMs = 30_000, clock?: HubClock): UpdateHubApi {
  const { endpoint, env } = config.yaml.app.api;
  const base = `${endpoint.replace(/\/+$/, "")}/${env}/v1/things/${identity.thingId}/update`;
  // signed with the hub's time once serve's clock found the device's wrong (egress/hub-clock.ts)
  const authorization = async () => ({
    Authorization: `Bearer ${await signThingToken({ thingId: identity.thingId, privateKey: identity.privateKey, now: clock?.nowSeconds() })}`,
  });
  const call = async (url: string, method: "GET" | "POST", body?: unknown) => {
    const answer = await sendWithHubTime(clock, async () =>
      requestText(url, {
        method,
        headers: { ...(await authorization()), ...(body ? { "Content-Type": "application/json" } : {}) },
        body: body ? JSON.stringify(body) : undefined,
        extraCaPem: identity.caPem,
        timeoutMs,
      }),
    );
    if (answer.status !== 200 && answer.status !== 201) {
      const refusal = answerRefusal(answer);
      // the status rides along: a 401 (revoked, a clock far off) gets its fix in the log
      throw Object.assign(new Error(`the hub answered ${answer.status} ${answer.statusText}`.trim() + (refusal ? ` (${refusal})` : "")), {
        status: answer.status,
      });
    }
    return { result: resultOf(answer.body, url) };
  };
  return {
    caPem: identity.caPem,
    authorization,
    binaryUrl: (version, target) => `${base}/binary?version=${encodeURIComponent(version)}&target=${encodeURIComponent(target)}`,
    async poll(running) {
      const outbox = running.outbox ? `&outbox=${running.outbox.depth}&outboxAge=${Math.floor(running.outbox.oldestAgeSeconds)}` : "";
      const url = `${base}?version=${encodeURIComponent(running.version)}&target=${encodeURIComponent(running.target)}${outbox}`;
      const update = (await call(url, "GET")).result.update;
      if (update === undefined || update === null) return undefined;
      if (!isOffer(update)) throw notFromHub(url, "its update is not {version, manifest, signature} of strings");
      return update;
    },
    async report(report) {
      await call(base, "POST", report);
    },
  };
}

/**
 * The `result` object of a hub's answer (the envelope every route answers with). Throws
 * FlashlexError (unavailable: what answers at api.endpoint is not a FlashLex hub, or not this
 * version's) naming the URL when the body is not JSON or holds no result object.
 */
function resultOf(body: string, url: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    throw notFromHub(url, "not JSON");
  }
  const result = (parsed as { result?: unknown } | null)?.result;
  if (typeof result !== "object" || result === null || Array.isArray(result)) throw notFromHub(url, "no result object");
  return result as Record<string, unknown>;
}

function isOffer(value: unknown): value is OfferedUpdate {
  const offer = value as Partial<OfferedUpdate> | null;
  return typeof offer === "object" && offer !== null && [offer.version, offer.manifest, offer.signature].every((v) => typeof v === "string");
}

function notFromHub(url: string, what: string): FlashlexError {
  return new FlashlexError(`${url.split("?")[0]}: the answer is not a FlashLex hub's (${what}); check api.endpoint`, "unavailable");
}
