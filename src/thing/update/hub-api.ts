/**
 * The thing's side of the hub's update routes (src/hub/http/update-routes.ts): poll, report,
 * and the URL of a binary; each request carries a freshly signed thing JWT, as collect does.
 */
import { signThingToken } from "../../crypto/jwt.ts";
import { requestText } from "../egress/http-post.ts";
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

export function updateHubApi(config: ThingConfig, identity: ThingIdentity, timeoutMs = 30_000): UpdateHubApi {
  const { endpoint, env } = config.yaml.app.api;
  const base = `${endpoint.replace(/\/+$/, "")}/${env}/v1/things/${identity.thingId}/update`;
  const authorization = async () => ({ Authorization: `Bearer ${await signThingToken({ thingId: identity.thingId, privateKey: identity.privateKey })}` });
  const call = async (url: string, method: "GET" | "POST", body?: unknown) => {
    const answer = await requestText(url, {
      method,
      headers: { ...(await authorization()), ...(body ? { "Content-Type": "application/json" } : {}) },
      body: body ? JSON.stringify(body) : undefined,
      extraCaPem: identity.caPem,
      timeoutMs,
    });
    if (answer.status !== 200 && answer.status !== 201) throw new Error(`the hub answered ${answer.status} ${answer.statusText}`.trim());
    return JSON.parse(answer.body) as { result: unknown };
  };
  return {
    caPem: identity.caPem,
    authorization,
    binaryUrl: (version, target) => `${base}/binary?version=${encodeURIComponent(version)}&target=${encodeURIComponent(target)}`,
    async poll(running) {
      const outbox = running.outbox ? `&outbox=${running.outbox.depth}&outboxAge=${Math.floor(running.outbox.oldestAgeSeconds)}` : "";
      const answer = await call(`${base}?version=${encodeURIComponent(running.version)}&target=${encodeURIComponent(running.target)}${outbox}`, "GET");
      return ((answer.result as { update?: OfferedUpdate | null }).update ?? undefined) || undefined;
    },
    async report(report) {
      await call(base, "POST", report);
    },
  };
}
