import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { MessageFeed } from "../../src/hub/messages/feed.ts";
import { methodLabel } from "../../src/hub/metrics/observer.ts";
import { createHubMetrics } from "../../src/hub/metrics/prometheus.ts";
import { FlashlexError } from "../../src/shared/errors.ts";
import { listenFailure, parseListenAddress } from "../../src/shared/listen-address.ts";
import { startMetricsListener } from "../../src/shared/metrics-http.ts";
import { createAgentMetrics, kindOfLogged } from "../../src/thing/metrics/prometheus.ts";
import { parseExposition } from "../support/prometheus-text.ts";

const message = (id: string) => ({ flmessagespk: id, thingId: "t", messagetype: "egress" as const, payload: "{}", fltimestamp: 0, datecreated: "" });

describe("listen addresses", () => {
  test("HOST:PORT, [IPv6]:PORT and a bare PORT (loopback)", () => {
    expect(parseListenAddress("127.0.0.1:9464")).toEqual({ host: "127.0.0.1", port: 9464 });
    expect(parseListenAddress("[::1]:9")).toEqual({ host: "::1", port: 9 });
    expect(parseListenAddress("9465")).toEqual({ host: "127.0.0.1", port: 9465 });
    expect(parseListenAddress("localhost:0")).toEqual({ host: "localhost", port: 0 });
  });
  test("anything else is refused", () => {
    for (const bad of ["", "host", ":80", "1.2.3.4:70000", "[zz]:1", "a b:1", "http://x:1", "1.2.3.4:", "x:-1"])
      expect(parseListenAddress(bad)).toBeUndefined();
  });
  test("a failed listen, in every shape the runtime gives it, is said as what to change; other errors are not listen failures", async () => {
    const metricsAt = async (host: string) => {
      try {
        (await startMetricsListener({ host, port: 0 }, async () => ({ contentType: "text/plain", body: "" }))).close();
        return "listened";
      } catch (err) {
        return listenFailure(err, { host, port: 0 });
      }
    };
    expect(await metricsAt("nosuchhost.invalid")).toStartWith("nosuchhost.invalid is neither an address of this machine nor a name that resolves to one");
    expect(await metricsAt("999.1.1.1")).toStartWith("999.1.1.1 is neither an address of this machine");
    expect(await metricsAt("fe80::1")).toBe("not an address this machine can listen on (EINVAL)");
    expect(listenFailure(Object.assign(new Error("getaddrinfo ENOTFOUND [::1]"), { code: "ENOTFOUND" }), { host: "[::1]", port: 1 })).toBe(
      "write an IPv6 address here without brackets (::1, not [::1])",
    );
    expect(listenFailure(Object.assign(new Error("x"), { code: "ENOENT", path: "/etc/hub/key.pem" }), { host: "h", port: 1 })).toBeUndefined();
    expect(listenFailure(new Error("a bug"), { host: "h", port: 1 })).toBeUndefined();
    // an unresolvable name comes back with a left-over errno (EISDIR in the unit suite, EINVAL alone)
    for (const code of ["EISDIR", "ENOENT", "EINVAL"]) {
      const stale = Object.assign(new Error(`${code}: illegal operation, listen`), { code, syscall: "listen" });
      expect(listenFailure(stale, { host: "nosuchhost.invalid", port: 1 })).toBe(
        `nosuchhost.invalid is neither an address of this machine nor a name that resolves to one (${code})`,
      );
    }
    expect(listenFailure(Object.assign(new Error("EINVAL"), { code: "EINVAL" }), { host: "10.9.8.7", port: 1 })).toBe(
      "not an address this machine can listen on (EINVAL)",
    );
  });
});

describe("the hub's registry", () => {
  const fleet = { things: 5, revoked: 1, verified: 3, pendingIngress: 7, earliestCertificateEnd: 1_900_000_000_000, databaseBytes: 4096 };
  const outboxes = { reporting: 2, depthSum: 12, depthMax: 10, oldestAgeSeconds: 30 };
  const states = { queued: 1, pending: 0, downloading: 2, installed: 0, healthy: 5, "rolled-back": 0, failed: 1, cancelled: 0 };
  const rollouts = { running: true, states, versions: { "1.2.3": 6, "1.3.0": 3, unknown: 1 } };
  const make = (connected: number | null = 4) => {
    const feed = new MessageFeed();
    const metrics = createHubMetrics({
      feed,
      fleet: async () => fleet,
      outboxes: async () => outboxes,
      rollouts: async () => rollouts,
      version: "1.2.3",
      certificates: () => ({ ca: 2_000_000_000_000, broker: 1_800_000_000_000 }),
    });
    if (connected !== null) metrics.countConnected(() => connected);
    return { feed, metrics };
  };

  test("messages are counted from the feed, once per event, by type, direction and path", async () => {
    const { feed, metrics } = make();
    const before = parseExposition((await metrics.render()).body);
    expect(before.value("flashlex_hub_messages_total", { type: "egress", path: "mqtt" })).toBe(0);
    feed.publish({ type: "collected", thingId: "t", thingName: "n", message: message("a"), via: "mqtt" });
    feed.publish({ type: "collected", thingId: "t", thingName: "n", message: message("b"), via: "http" });
    feed.publish({ type: "collected", thingId: "t", thingName: "n", message: message("c"), via: "http" });
    feed.publish({ type: "sent", thingId: "t", thingName: "n", message: message("d") });
    feed.publish({ type: "delivered", thingName: "n", flmessagespk: "d", at: 1 });
    const after = parseExposition((await metrics.render()).body);
    expect(after.value("flashlex_hub_messages_total", { type: "egress", direction: "in", path: "mqtt" })).toBe(1);
    expect(after.value("flashlex_hub_messages_total", { type: "egress", direction: "in", path: "http" })).toBe(2);
    expect(after.value("flashlex_hub_messages_total", { type: "ingress", direction: "in", path: "http" })).toBe(1);
    expect(after.value("flashlex_hub_messages_total", { type: "ingress", direction: "out", path: "mqtt" })).toBe(1);
    expect(after.types.get("flashlex_hub_messages_total")).toBe("counter");
    metrics.close();
    feed.publish({ type: "delivered", thingName: "n", flmessagespk: "e", at: 2 });
    expect(parseExposition((await metrics.render()).body).value("flashlex_hub_messages_total", { direction: "out" })).toBe(1);
  });

  test("the fleet's gauges are read at scrape time; things by status add up", async () => {
    const { metrics } = make();
    const text = parseExposition((await metrics.render()).body);
    expect(text.value("flashlex_hub_things", { status: "created" })).toBe(1);
    expect(text.value("flashlex_hub_things", { status: "verified" })).toBe(3);
    expect(text.value("flashlex_hub_things", { status: "revoked" })).toBe(1);
    expect(text.value("flashlex_hub_ingress_pending")).toBe(7);
    expect(text.value("flashlex_hub_things_connected")).toBe(4);
    expect(text.value("flashlex_hub_thing_outbox_messages")).toBe(12);
    expect(text.value("flashlex_hub_thing_outbox_messages_max")).toBe(10);
    expect(text.value("flashlex_hub_thing_outbox_oldest_age_seconds")).toBe(30);
    expect(text.value("flashlex_hub_info", { version: "1.2.3" })).toBe(1);
    expect(text.value("process_resident_memory_bytes")).toBeGreaterThan(0);
    // when certificates end and how large the database is (new-user pass 25, F12; pass 27, F8)
    expect(text.value("flashlex_hub_thing_certificate_earliest_expiry_timestamp_seconds")).toBe(1_900_000_000);
    expect(text.value("flashlex_hub_database_size_bytes")).toBe(4096);
    expect(text.value("flashlex_hub_certificate_expiry_timestamp_seconds", { certificate: "ca" })).toBe(2_000_000_000);
    expect(text.value("flashlex_hub_certificate_expiry_timestamp_seconds", { certificate: "broker" })).toBe(1_800_000_000);
    // rollouts and versions (no metric told how a rollout went, or which version the fleet runs)
    expect(text.value("flashlex_hub_update_rollout_running")).toBe(1);
    for (const [state, n] of Object.entries(states)) expect(text.value("flashlex_hub_update_things", { state })).toBe(n);
    expect(text.value("flashlex_hub_things_by_version", { version: "1.3.0" })).toBe(3);
    expect(text.value("flashlex_hub_things_by_version", { version: "unknown" })).toBe(1);
  });

  // Every render runs prom-client's default collectors, and Bun's v8.getHeapSpaceStatistics walks
  // the live heap (about 40 ms per million objects): alone this test takes 0.2 s, in a shard
  // process that has run some 70 files before it 2 to 5 s. So its own bound rather than bun's
  // default 5 s, and a reuse period the renders cannot outlast (with the default 5 s, renders
  // slower than that would read the fleet again).
  test("64 scrapes at once share one fleet read, reused for a few seconds; a failed read leaves the fleet gauges out and is counted", async () => {
    const feed = new MessageFeed();
    let reads = 0;
    let down = false;
    const failures: unknown[] = [];
    const metrics = createHubMetrics({
      feed,
      fleet: async () => {
        reads++;
        if (down) throw new FlashlexError("PostgreSQL at 127.0.0.1:5432: connection refused", "unavailable");
        return fleet;
      },
      outboxes: async () => outboxes,
      rollouts: async () => rollouts,
      version: "1.2.3",
      onFleetReadFailed: (err) => failures.push(err),
      fleetTtlMs: 60_000,
    });
    const bodies = await Promise.all(Array.from({ length: 64 }, () => metrics.render()));
    expect(reads).toBe(1);
    for (const body of bodies) expect(parseExposition(body.body).value("flashlex_hub_ingress_pending")).toBe(7);
    await metrics.render();
    expect(reads).toBe(1);

    const failing = createHubMetrics({
      ...{ feed, outboxes: async () => outboxes, rollouts: async () => rollouts, version: "1" },
      fleet: async () => {
        down = true;
        reads++;
        throw new FlashlexError("PostgreSQL at 127.0.0.1:5432: connection refused", "unavailable");
      },
      onFleetReadFailed: (err) => failures.push(err),
    });
    const text = parseExposition((await failing.render()).body);
    expect(text.value("flashlex_hub_ingress_pending")).toBeNaN();
    expect(text.value("flashlex_hub_things", { status: "verified" })).toBeUndefined();
    expect(text.value("flashlex_hub_thing_outbox_messages")).toBe(12);
    expect(failures).toHaveLength(1);
    // counted as it happens: the next scrape shows it (a failure is not cached: that one tries again)
    const next = parseExposition((await failing.render()).body);
    expect(next.value("flashlex_hub_errors_total", { kind: "unavailable", via: "metrics" })).toBeGreaterThanOrEqual(1);
    expect(failures).toHaveLength(2);
    metrics.close();
    failing.close();
  }, 30_000);

  test("an external broker (cannot tell who is connected) leaves the gauge out rather than saying 0", async () => {
    const { metrics } = make(null);
    expect(parseExposition((await metrics.render()).body).value("flashlex_hub_things_connected")).toBeUndefined();
  });

  test("requests go into the histogram by route pattern, method and status class; errors by kind and path", async () => {
    const { metrics } = make();
    metrics.observer.request({ route: "things/:id/collect", method: "POST", status: 200, seconds: 0.003 });
    metrics.observer.request({ route: "things/:id/collect", method: "POST", status: 503, seconds: 0.2 });
    metrics.observer.error("try-later", "http");
    metrics.observer.error("damaged", "mqtt");
    metrics.observer.dropped("hub.collect_refused");
    metrics.observer.expired(1200);
    metrics.observer.expired(3);
    const text = parseExposition((await metrics.render()).body);
    const route = { route: "things/:id/collect", method: "POST" };
    expect(text.value("flashlex_hub_http_request_duration_seconds_count", { ...route, status: "2xx" })).toBe(1);
    expect(text.value("flashlex_hub_http_request_duration_seconds_count", { ...route, status: "5xx" })).toBe(1);
    expect(text.value("flashlex_hub_http_request_duration_seconds_bucket", { ...route, status: "2xx", le: "0.005" })).toBe(1);
    expect(text.value("flashlex_hub_http_request_duration_seconds_bucket", { ...route, status: "2xx", le: "0.001" })).toBe(0);
    expect(text.value("flashlex_hub_errors_total", { kind: "try-later", via: "http" })).toBe(1);
    expect(text.value("flashlex_hub_errors_total", { kind: "damaged", via: "mqtt" })).toBe(1);
    expect(text.value("flashlex_hub_errors_total", { kind: "bug", via: "http" })).toBe(0);
    expect(text.value("flashlex_hub_mqtt_dropped_total", { event: "hub.collect_refused" })).toBe(1);
    expect(text.value("flashlex_hub_messages_expired_total")).toBe(1203);
  });

  test("a method a client invents is one label, not a new series each", () => {
    expect(methodLabel("POST")).toBe("POST");
    expect(methodLabel("FROBNICATE")).toBe("other");
  });
});

describe("the agent's registry", () => {
  const now = 1_700_000_100_000;
  const make = (oldest: number | null = now - 90_000) =>
    createAgentMetrics({
      outbox: () => ({ pending: 3, rejected: 1, oldestCreatedAt: oldest }),
      ingress: () => ({ total: 10, unacked: 4 }),
      connected: () => true,
      version: "1.2.3",
      now: () => now,
    });

  test("outbox depth and age, ingress, reconnects (not the first connection)", async () => {
    const metrics = make();
    metrics.connected();
    metrics.connected();
    metrics.connected();
    metrics.ingressStored();
    const text = parseExposition((await metrics.render()).body);
    expect(text.value("flashlex_agent_outbox_messages", { state: "pending" })).toBe(3);
    expect(text.value("flashlex_agent_outbox_messages", { state: "rejected" })).toBe(1);
    expect(text.value("flashlex_agent_outbox_oldest_age_seconds")).toBe(90);
    expect(text.value("flashlex_agent_ingress_messages", { state: "unacked" })).toBe(4);
    expect(text.value("flashlex_agent_ingress_messages", { state: "acked" })).toBe(6);
    expect(text.value("flashlex_agent_ingress_stored_total")).toBe(1);
    expect(text.value("flashlex_agent_mqtt_reconnects_total")).toBe(2);
    expect(text.value("flashlex_agent_mqtt_connected")).toBe(1);
    expect(parseExposition((await make(null).render()).body).value("flashlex_agent_outbox_oldest_age_seconds")).toBe(0);
  });

  test("the last error is one series with its kind, event and time, never its message", async () => {
    const metrics = make();
    expect(parseExposition((await metrics.render()).body).value("flashlex_agent_last_error_timestamp_seconds")).toBeUndefined();
    metrics.tap("warn", "mqtt.reconnect_scheduled", { inMs: 200 }); // a warning without an error is not a failure
    metrics.tap("error", "store.sweep_failed", { error: new FlashlexError("disk /secret/path is full", "full") });
    metrics.tap("warn", "outbox.delivery_failed", { error: new FlashlexError("the hub answered 503 token=abc", "unavailable") });
    const text = (await metrics.render()).body;
    const parsed = parseExposition(text);
    expect(parsed.samples.filter((s) => s.name === "flashlex_agent_last_error_timestamp_seconds")).toEqual([
      { name: "flashlex_agent_last_error_timestamp_seconds", labels: { kind: "unavailable", event: "outbox.delivery_failed" }, value: now / 1000 },
    ]);
    expect(parsed.value("flashlex_agent_errors_total", { kind: "full" })).toBe(1);
    expect(parsed.value("flashlex_agent_errors_total", { kind: "unavailable" })).toBe(1);
    expect(parsed.sum("flashlex_agent_errors_total")).toBe(2);
    expect(text).not.toContain("secret");
    expect(text).not.toContain("abc");
  });

  test("a logged failure's kind: its error's, a kind field, else bug", () => {
    expect(kindOfLogged({ kind: "io" })).toBe("io");
    expect(kindOfLogged({ error: new FlashlexError("x", "permission") })).toBe("permission");
    expect(kindOfLogged({ error: "a string says nothing" })).toBe("bug");
  });
});

describe("the scrape listener", () => {
  test("GET /metrics answers the exposition; other paths 404, other methods 405, a failing render 500 without details", async () => {
    let fail = false;
    const listener = await startMetricsListener({ host: "127.0.0.1", port: 0 }, async () => {
      if (fail) throw new Error("secret detail");
      return { contentType: "text/plain; version=0.0.4", body: "x_total 1\n" };
    });
    try {
      const ok = await fetch(listener.url, { signal: AbortSignal.timeout(5000) });
      expect(ok.status).toBe(200);
      expect(ok.headers.get("content-type")).toContain("version=0.0.4");
      expect(parseExposition(await ok.text()).value("x_total")).toBe(1);
      expect((await fetch(listener.url.replace("/metrics", "/other"), { signal: AbortSignal.timeout(5000) })).status).toBe(404);
      expect((await fetch(listener.url, { method: "POST", signal: AbortSignal.timeout(5000) })).status).toBe(405);
      fail = true;
      const failed = await fetch(listener.url, { signal: AbortSignal.timeout(5000) });
      expect(failed.status).toBe(500);
      expect(await failed.text()).not.toContain("secret");
    } finally {
      await listener.close();
    }
  });

  test("a busy port rejects with the listen error, for the caller to name its setting", async () => {
    const first = await startMetricsListener({ host: "127.0.0.1", port: 0 }, async () => ({ contentType: "text/plain", body: "" }));
    try {
      const port = Number(new URL(first.url).port);
      const second = startMetricsListener({ host: "127.0.0.1", port }, async () => ({ contentType: "text/plain", body: "" }));
      await expect(second).rejects.toMatchObject({ code: "EADDRINUSE" });
    } finally {
      await first.close();
    }
  });
});

describe("docs/prometheus/alerts.yml", () => {
  const promtool = ["/usr/bin/promtool", "/usr/local/bin/promtool"].find((p) => existsSync(p));
  const rules = join(import.meta.dir, "../../docs/prometheus");
  // Debian's promtool comes with the prometheus package, which scripts/install-system-packages.sh
  // installs (CI too); a machine without it skips these (docs/metrics.md).
  test.skipIf(!promtool)("promtool check rules accepts it", () => {
    const run = Bun.spawnSync([promtool!, "check", "rules", join(rules, "alerts.yml")], { timeout: 30_000 });
    expect(run.stdout.toString() + run.stderr.toString()).toContain("SUCCESS");
    expect(run.exitCode).toBe(0);
  });

  test.skipIf(!promtool)("every alert fires on the series it watches (promtool test rules alerts.test.yml)", () => {
    const run = Bun.spawnSync([promtool!, "test", "rules", "alerts.test.yml"], { cwd: rules, timeout: 60_000 });
    const output = run.stdout.toString() + run.stderr.toString();
    expect(output).toContain("SUCCESS");
    expect(run.exitCode).toBe(0);
    // each alert of alerts.yml has a test there
    const alerts = [...readFileSync(join(rules, "alerts.yml"), "utf8").matchAll(/- alert: (\w+)/g)].map((m) => m[1]);
    const tested = new Set([...readFileSync(join(rules, "alerts.test.yml"), "utf8").matchAll(/alertname: (\w+)/g)].map((m) => m[1]));
    expect(alerts.filter((a) => !tested.has(a))).toEqual([]);
  });
});
