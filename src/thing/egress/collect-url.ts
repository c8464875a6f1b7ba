/**
 * Where a thing's egress over HTTP goes, apart from the delivery (jose, node:crypto) so that a
 * one-shot `collect` can start connecting before it loads that.
 */
import type { ThingConfig } from "../settings.ts";
import { preconnect } from "./http-post.ts";

/** This thing's collect URL: `ENDPOINT/ENV/v1/things/ID/collect` (the endpoint's trailing slashes dropped). */
export function collectUrl(config: ThingConfig): string {
  const { endpoint, env } = config.yaml.app.api;
  return `${endpoint.replace(/\/+$/, "")}/${env}/v1/things/${config.yaml.thing.id}/collect`;
}

/**
 * Starts the connection to the collect API that this process's POST will use (http-post.ts
 * `preconnect`), so that it opens while the keys load, the outbox opens and the token is signed.
 * Never throws; a connection that fails here is the POST's to report.
 */
export function preconnectCollect(config: ThingConfig): void {
  preconnect(collectUrl(config));
}
