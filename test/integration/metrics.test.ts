/**
 * Metrics end to end with the compiled binary (docs/metrics.md): `hub serve` with its scrape
 * listener on a loopback port, a thing's `serve --metrics`, one ingress message and one egress
 * message; both endpoints scraped before and after, parsed as Prometheus text, and every counter
 * and gauge checked to have moved as it should (and no thing id in any label).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MessageStore } from "../../src/thing/store/message-store.ts";
import { type Background, run, start } from "../support/binary.ts";
import { type HubFixture, type HubThing, makeHubFixture } from "../support/hub-fixture.ts";
import { freePort } from "../support/mosquitto.ts";
import { type Exposition, parseExposition } from "../support/prometheus-text.ts";
import { waitUntil } from "../support/wait.ts";

const work = mkdtempSync(join(tmpdir(), "flashlex-metrics-"));
let hub: HubFixture;
let thing: HubThing;
let hubProcess: Background;
let agent: Background;
let hubMetrics: string;
let agentMetrics: string;

async function scrape(url: string): Promise<Exposition> {
  const response = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  expect(response.status).toBe(200);
  expect(response.headers.get("content-type")).toContain("text/plain");
  return parseExposition(await response.text());
}

beforeAll(async () => {
  hub = await makeHubFixture(work);
  const [hubPort, agentPort] = [await freePort(), await freePort()];
  hub.configure([[["metrics", "listen"], `127.0.0.1:${hubPort}`]]);
  hubMetrics = `http://127.0.0.1:${hubPort}/metrics`;
  agentMetrics = `http://127.0.0.1:${agentPort}/metrics`;
  thing = await hub.createThing("metered");
  hubProcess = await hub.serve();
  agent = start(["serve", ...thing.flags, "--metrics", `127.0.0.1:${agentPort}`]);
  await agent.waitFor(/serve\.started/, 30_000);
  await agent.waitFor(/mqtt\.subscribed/, 30_000);
}, 120_000);

afterAll(async () => {
  await agent?.stop(5_000);
  await hubProcess?.stop(5_000);
  rmSync(work, { recursive: true, force: true });
});

describe("metrics", () => {
  test("a message each way moves the hub's and the agent's counters and gauges; both scrapes parse", async () => {
    expect(hubProcess.output()).toContain(`metrics=${hubMetrics}`);
    expect(agent.output()).toContain(`metrics=${agentMetrics}`);
    // the connect is recorded a moment after the CONNACK (a batch of connects shares a commit)
    const hubBefore = await waitUntil(
      "the connected thing counted as verified",
      async () => {
        const now = await scrape(hubMetrics);
        return now.value("flashlex_hub_things", { status: "verified" }) === 1 && now;
      },
      10_000,
      () => hubProcess.output(),
    );
    expect(hubBefore.sum("flashlex_hub_messages_total")).toBe(0);
    // connected is heard from: the offline alert (verified - connected) counts a thing that only receives (new-user pass 26, F1)
    expect(hubBefore.value("flashlex_hub_things", { status: "verified" })).toBe(1);
    expect(hubBefore.value("flashlex_hub_things", { status: "created" })).toBe(0);
    expect(hubBefore.value("flashlex_hub_things_connected")).toBe(1);
    const agentBefore = await scrape(agentMetrics);
    expect(agentBefore.value("flashlex_agent_ingress_stored_total")).toBe(0);
    expect(agentBefore.value("flashlex_agent_mqtt_connected")).toBe(1);

    // Ingress: the operator API's publish; the thing stores it and acknowledges.
    await hub.publish(thing.id, { n: 1 });
    await agent.waitFor(/ingress\.stored/, 15_000);
    // Egress: `collect` on the thing, stored by the hub.
    const collected = await run(["collect", ...thing.flags], { input: '{"temperature":21.5}', timeoutMs: 30_000 });
    expect(collected.code).toBe(0);
    expect(await hub.egress(thing.id)).toHaveLength(1);

    // The PUBACK is recorded a moment after the thing's commit, and the outbox report rides on
    // the update check 2 s after serve started: wait for both.
    const hubAfter = await waitUntil(
      "the delivery and the outbox report in the hub's scrape",
      async () => {
        const now = await scrape(hubMetrics);
        const delivered = now.value("flashlex_hub_messages_total", { type: "ingress", direction: "out" }) === 1;
        const polled =
          now.value("flashlex_hub_thing_outbox_reporting") === 1 && now.value("flashlex_hub_things_by_version", { version: "unknown" }) === undefined;
        return delivered && polled && now;
      },
      20_000,
      () => hubProcess.output() + agent.output(),
    );
    expect(hubAfter.value("flashlex_hub_messages_total", { type: "ingress", direction: "in", path: "http" })).toBe(1);
    expect(hubAfter.sum("flashlex_hub_messages_total", { type: "egress", direction: "in" })).toBe(1);
    expect(hubAfter.value("flashlex_hub_ingress_pending")).toBe(0);
    expect(hubAfter.value("flashlex_hub_things", { status: "verified" })).toBe(1);
    expect(hubAfter.value("flashlex_hub_things", { status: "created" })).toBe(0);
    expect(hubAfter.value("flashlex_hub_thing_outbox_messages")).toBe(0);
    expect(hubAfter.sum("flashlex_hub_errors_total")).toBe(0);
    // the version the thing runs, from its update check; no rollout yet (every state 0)
    const [running] = hubAfter.samples.filter((s) => s.name === "flashlex_hub_things_by_version");
    expect(running?.value).toBe(1);
    expect(running?.labels.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(hubAfter.value("flashlex_hub_update_rollout_running")).toBe(0);
    expect(hubAfter.value("flashlex_hub_update_things", { state: "healthy" })).toBe(0);
    expect(hubAfter.sum("flashlex_hub_update_things")).toBe(0);
    const requests = (route: string, method: string) => hubAfter.sum("flashlex_hub_http_request_duration_seconds_count", { route, method, status: "2xx" });
    expect(requests("things/:id/publish", "POST")).toBe(1);
    expect(requests("things/:id/update", "GET")).toBeGreaterThanOrEqual(1);
    // No label holds an id: a series per thing would grow with the fleet.
    for (const sample of hubAfter.samples) for (const value of Object.values(sample.labels)) expect(value).not.toContain(thing.id);

    const agentAfter = await scrape(agentMetrics);
    expect(agentAfter.value("flashlex_agent_ingress_stored_total")).toBe(1);
    expect(agentAfter.value("flashlex_agent_ingress_messages", { state: "unacked" })).toBe(1);
    expect(agentAfter.value("flashlex_agent_outbox_messages", { state: "pending" })).toBe(0);
    expect(agentAfter.value("flashlex_agent_outbox_oldest_age_seconds")).toBe(0);
    expect(agentAfter.value("flashlex_agent_mqtt_reconnects_total")).toBe(0);
    expect(agentAfter.value("process_resident_memory_bytes")).toBeGreaterThan(0);
  }, 90_000);

  test("the API's port does not answer the exposition; the scrape listener answers nothing else", async () => {
    const onApi = await fetch(`http://127.0.0.1:${hub.apiPort}/metrics`, { redirect: "manual", signal: AbortSignal.timeout(5_000) });
    expect(await onApi.text()).not.toContain("flashlex_hub_messages_total");
    expect((await fetch(hubMetrics.replace("/metrics", "/dev/v1/things"), { signal: AbortSignal.timeout(5_000) })).status).toBe(404);
  });

  test("a metrics address already taken is exit 78 naming the flag; one that is not an address is 64", async () => {
    expect(await agent.stop(5_000)).toBe(0);
    const holder = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    // a message waiting for the handler: a serve refused at start must not have run it (it was, the
    // metrics listener being the last thing opened; the unit then stays stopped after real work)
    const store = MessageStore.open(join(thing.dataDir, "subscription.db"));
    store.insertIngress({ topic: "ingress/x", payload: new TextEncoder().encode("{}"), qos: 1, retain: false, receivedAt: Date.now() });
    store.close();
    const ran = join(work, "handler-ran");
    try {
      const taken = await run(["serve", ...thing.flags, "--exec", `touch '${ran}'`, "--metrics", `127.0.0.1:${holder.port}`], { timeoutMs: 30_000 });
      expect(taken.code).toBe(78);
      expect(taken.stderr).toContain(`--metrics: the metrics cannot listen on 127.0.0.1:${holder.port}`);
      expect(existsSync(ran)).toBe(false);
    } finally {
      holder.stop(true);
    }
    const bad = await run(["serve", ...thing.flags, "--metrics", "nowhere"], { timeoutMs: 30_000 });
    expect(bad.code).toBe(64);
    expect(bad.stderr).toContain("--metrics nowhere");
  }, 60_000);
});
