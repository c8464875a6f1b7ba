/**
 * The hub's HTTP API over a store, built as `hub serve` builds it (src/hub/service.ts) but
 * without a socket or a broker of its own: tests call its `fetch` directly. `collector` is the
 * one the API uses, for tests that feed the broker's events too.
 */
import { createHubApi, type HubApi } from "../../src/hub/http/routes.ts";
import { type HubUseCaseDeps, hubUseCases } from "../../src/hub/hub.ts";
import type { Collector } from "../../src/hub/messages/collect.ts";

export function hubApiOver(deps: HubUseCaseDeps): HubApi & { collector: Collector } {
  const useCases = hubUseCases(deps);
  return { ...createHubApi({ ...useCases, log: deps.log }), collector: useCases.collector };
}
