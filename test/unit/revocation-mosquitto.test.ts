/**
 * Revocation on an external broker, without a broker: the dynamic-security documents and their
 * control client, the enforcer's retries, the reload coalescing, the CRL renewal schedule.
 * test/integration/mosquitto-revocation.test.ts runs all of it against Debian's Mosquitto.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createBrokerReloader } from "../../src/hub/broker/broker-reload.ts";
import {
  DYNSEC_TOPIC,
  HUB_ADMIN_ROLE,
  isHarmless,
  parseDynsecResponses,
  REVOKED_ROLE,
  renderDynsecState,
  revokeCommands,
} from "../../src/hub/broker/dynsec.ts";
import { createDynsecControl } from "../../src/hub/broker/dynsec-control.ts";
import { renderMosquittoConfig } from "../../src/hub/broker/mosquitto-config.ts";
import { createRevocationEnforcer } from "../../src/hub/broker/revocation-enforcer.ts";
import { crlValiditySeconds, DEFAULT_CRL_VALIDITY_SECONDS, renewalIntervalMs, startCrlRenewal } from "../../src/hub/things/crl-renewal.ts";
import { createLogger } from "../../src/shared/log.ts";
import { scratchDir } from "../support/scratch.ts";

const lines: string[] = [];
const log = createLogger({ level: "debug", write: (l) => lines.push(l) });

describe("dynamic-security documents", () => {
  test("the initial state: the hub is admin of the control topics only; revoked things are denied everything", () => {
    const state = JSON.parse(renderDynsecState("flashlex-hub", ["ecd13b11-a", "ecd13b11-a", "ecd13b11-b"]));
    expect(state.defaultACLAccess).toEqual({ publishClientSend: false, publishClientReceive: false, subscribe: false, unsubscribe: false });
    expect(state.clients).toEqual([
      { username: "flashlex-hub", roles: [{ rolename: HUB_ADMIN_ROLE }] },
      { username: "ecd13b11-a", disabled: true, roles: [{ rolename: REVOKED_ROLE }] },
      { username: "ecd13b11-b", disabled: true, roles: [{ rolename: REVOKED_ROLE }] },
    ]);
    // no client carries a password: nobody logs in to dynsec with one
    expect(JSON.stringify(state)).not.toContain("password");
    const admin = state.roles.find((r: any) => r.rolename === HUB_ADMIN_ROLE);
    expect(admin.acls.every((a: any) => a.allow && a.topic.startsWith("$CONTROL/dynamic-security/v1"))).toBe(true);
    const revoked = state.roles.find((r: any) => r.rolename === REVOKED_ROLE);
    expect(revoked.acls.map((a: any) => a.acltype).sort()).toStrictEqual([
      "publishClientReceive",
      "publishClientSend",
      "subscribePattern",
      "unsubscribePattern",
    ]);
    expect(revoked.acls.every((a: any) => a.topic === "#" && a.allow === false)).toBe(true);
  });

  test("revoking is create (with the role), remove and add the role, disable; repeats only answer harmless errors", () => {
    expect(revokeCommands("ecd13b11-a").map((c) => c.command)).toStrictEqual(["createClient", "removeClientRole", "addClientRole", "disableClient"]);
    expect(isHarmless("removeClientRole", "Client does not have role")).toBe(true);
    expect(isHarmless("addClientRole", "Internal error")).toBe(false);
    expect(isHarmless("createClient", "Client already exists")).toBe(true);
    expect(isHarmless("createRole", "Role already exists")).toBe(true);
    expect(isHarmless("disableClient", "Client not found")).toBe(false);
    expect(isHarmless("createClient", "Internal error")).toBe(false);
  });

  test("a response document is parsed; anything else throws", () => {
    expect(parseDynsecResponses('{"responses":[{"command":"disableClient","correlationData":"x:0"}]}')).toEqual([
      { command: "disableClient", correlationData: "x:0" },
    ]);
    expect(() => parseDynsecResponses("{}")).toThrow();
    expect(() => parseDynsecResponses("not json")).toThrow();
  });

  test("the Mosquitto config loads the plugin after the listener's ACL file, or not at all", () => {
    const base = { port: 8883, bindAddress: "0.0.0.0", caFile: "/c", certFile: "/s", keyFile: "/k", aclFile: "/acl" };
    const withPlugin = renderMosquittoConfig({ ...base, dynsec: { plugin: "/p.so", stateFile: "/d/state.json" } });
    expect(withPlugin.indexOf("plugin /p.so")).toBeGreaterThan(withPlugin.indexOf("acl_file /acl"));
    expect(withPlugin).toContain("plugin_opt_config_file /d/state.json");
    expect(renderMosquittoConfig(base)).not.toContain("plugin");
    expect(() => renderMosquittoConfig({ ...base, dynsec: { plugin: "/p.so\nallow_anonymous true", stateFile: "/d" } })).toThrow();
  });

  test("the Mosquitto config turns Nagle off, before the listener: a TLS 1.3 CONNACK would otherwise wait ~40 ms for a delayed ACK", () => {
    const config = renderMosquittoConfig({ port: 8883, bindAddress: "0.0.0.0", caFile: "/c", certFile: "/s", keyFile: "/k", aclFile: "/acl" });
    expect(config.split("\n")).toContain("set_tcp_nodelay true");
    expect(config.indexOf("set_tcp_nodelay true")).toBeLessThan(config.indexOf("listener 8883"));
  });
});

describe("the control client", () => {
  /** A broker that answers each document as `answer` says, or not at all. */
  function fakeBroker(answer: (cmd: any) => string | undefined | "silent") {
    const sent: any[] = [];
    const control = createDynsecControl({
      timeoutMs: 300,
      batchSize: 2,
      async publish(topic, payload) {
        expect(topic).toBe(DYNSEC_TOPIC);
        const doc = JSON.parse(payload);
        sent.push(doc);
        if (doc.commands.some((c: any) => answer(c) === "silent")) return;
        const responses = doc.commands.map((c: any) => ({ command: c.command, correlationData: c.correlationData, error: answer(c) }));
        // answers arrive later, in reverse order: matched by correlationData, not position
        setTimeout(() => control.handleResponse(Buffer.from(JSON.stringify({ responses: responses.reverse() }))), 5);
      },
    });
    return { control, sent };
  }

  test("revoke sends the role once, then the things in batches; 'already exists' is fine", async () => {
    const { control, sent } = fakeBroker((c) => (c.command === "createClient" ? "Client already exists" : undefined));
    await control.revoke(["t1", "t2", "t3"]);
    await control.revoke(["t4"]);
    expect(sent.map((d) => d.commands.map((c: any) => c.command).join(","))).toStrictEqual([
      "createRole",
      "createClient,removeClientRole,addClientRole,disableClient,createClient,removeClientRole,addClientRole,disableClient",
      "createClient,removeClientRole,addClientRole,disableClient",
      "createClient,removeClientRole,addClientRole,disableClient",
    ]);
  });

  test("a real error names the command and the thing", async () => {
    const { control } = fakeBroker((c) => (c.command === "disableClient" && c.username === "t2" ? "Internal error" : undefined));
    await expect(control.revoke(["t1", "t2"])).rejects.toThrow(/disableClient t2: Internal error/);
  });

  test("no answer (no plugin) is 'unavailable' after the timeout", async () => {
    const { control } = fakeBroker(() => "silent");
    const started = performance.now();
    await expect(control.revoke(["t1"])).rejects.toMatchObject({ kind: "unavailable" });
    expect(performance.now() - started).toBeLessThan(2_000);
  });

  test("garbage on the response topic is ignored", () => {
    const { control } = fakeBroker(() => undefined);
    expect(() => control.handleResponse(Buffer.from("}{"))).not.toThrow();
  });
});

describe("the enforcer", () => {
  test("a failed attempt keeps its names and is retried until the broker takes them", async () => {
    const calls: string[][] = [];
    let failures = 2;
    const enforcer = createRevocationEnforcer({
      async revoke(names) {
        calls.push([...names]);
        if (failures-- > 0) throw new Error("broker away");
      },
      listRevoked: async () => ["a", "b"],
      log,
      retryMs: 30,
    });
    await enforcer.enforce(["c"]);
    await enforcer.reconcile();
    for (let i = 0; i < 100 && calls.length < 3; i++) await Bun.sleep(10);
    expect(calls.at(-1)?.sort()).toEqual(["a", "b", "c"]);
    const before = calls.length;
    await Bun.sleep(100);
    expect(calls.length).toBe(before); // nothing left: no more attempts
    enforcer.stop();
    // one WARN for the outage, not one per retry
    expect(lines.filter((l) => l.includes("hub.revocation_enforce_failed") && l.includes("WARN")).length).toBe(1);
  });

  test("the revoked things that could not be listed (the database away at start) are listed again until they can be", async () => {
    const calls: string[][] = [];
    let listFailures = 2;
    const enforcer = createRevocationEnforcer({
      async revoke(names) {
        calls.push([...names]);
      },
      async listRevoked() {
        if (listFailures-- > 0) throw new Error("database away");
        return ["revoked-while-down"];
      },
      log,
      retryMs: 30,
    });
    await enforcer.reconcile();
    expect(calls).toEqual([]);
    for (let i = 0; i < 100 && calls.length < 1; i++) await Bun.sleep(10);
    enforcer.stop();
    // it waited for the broker's next reconnect, which may not come for days
    expect(calls).toEqual([["revoked-while-down"]]);
  });
});

describe("the broker reload", () => {
  test("no command: nothing runs", async () => {
    await createBrokerReloader(undefined, log).request("test");
  });

  test("a burst of requests is one run plus one", async () => {
    const dir = scratchDir("flashlex-reload-");
    const file = join(dir, "runs");
    const reloader = createBrokerReloader(["sh", "-c", `sleep 0.1; echo run >> ${file}`], log);
    await Promise.all(Array.from({ length: 10 }, (_, i) => reloader.request(`r${i}`)));
    expect(readFileSync(file, "utf8").trim().split("\n")).toHaveLength(2);
  });

  test("a failing command is logged with its exit, never thrown, and never with its arguments (they may hold a password)", async () => {
    await createBrokerReloader(["sh", "-c", "echo nope >&2; exit 3", "--password=hunter2"], log).request("test");
    const failed = lines.filter((l) => l.includes("hub.broker_reload_failed"));
    expect(failed.some((l) => l.includes("nope") && l.includes('error="exit 3"'))).toBe(true);
    expect(failed.join("\n")).not.toContain("hunter2");
    await createBrokerReloader(["/nonexistent/reload"], log).request("test");
    expect(lines.some((l) => l.includes("hub.broker_reload_failed") && l.includes("not found (ENOENT)"))).toBe(true);
  });
});

describe("CRL renewal", () => {
  test("a year by default; the test override needs at least 3 s, anything else is a config error naming it; renewal every third, at most daily", () => {
    expect(crlValiditySeconds({})).toBe(DEFAULT_CRL_VALIDITY_SECONDS);
    expect(crlValiditySeconds({ FLASHLEX_CRL_VALIDITY_SECONDS: "" })).toBe(DEFAULT_CRL_VALIDITY_SECONDS);
    expect(crlValiditySeconds({ FLASHLEX_CRL_VALIDITY_SECONDS: "6" })).toBe(6);
    // were a year without a word
    expect(crlValiditySeconds({ FLASHLEX_CRL_VALIDITY_SECONDS: "3153600000" })).toBe(3_153_600_000);
    // the last two made a CRL whose nextUpdate has no encoding ("Bad time value" to OpenSSL)
    for (const bad of ["1", "soon", "6.5", " 6", "0x10", "-6", "3153600001", "300000000000", "999999999999999"]) {
      expect(() => crlValiditySeconds({ FLASHLEX_CRL_VALIDITY_SECONDS: bad })).toThrow(
        expect.objectContaining({
          kind: "config",
          message: `$FLASHLEX_CRL_VALIDITY_SECONDS is ${JSON.stringify(bad)}; it takes a whole number of seconds, at least 3 and at most 3153600000 (unset: 31536000, a year)`,
        }),
      );
    }
    expect(renewalIntervalMs(6)).toBe(2_000);
    expect(renewalIntervalMs(DEFAULT_CRL_VALIDITY_SECONDS)).toBe(86_400_000);
  });

  test("renews at start and on schedule; a failure is retried sooner", async () => {
    const renewals: number[] = [];
    let fail = false;
    let reloads = 0;
    const stop = await startCrlRenewal({
      async renew() {
        renewals.push(Date.now());
        if (fail) {
          fail = false;
          throw new Error("disk full");
        }
        return ["crl.pem"];
      },
      afterRenewal: async () => void reloads++,
      intervalMs: 100,
      log,
    });
    expect(renewals).toHaveLength(1);
    fail = true;
    await Bun.sleep(260);
    stop();
    const count = renewals.length;
    // start, the failed one at ~100 ms, its retry 10 ms later, then ~210 ms
    expect(count).toBeGreaterThanOrEqual(3);
    expect(reloads).toBe(count - 1);
    await Bun.sleep(150);
    expect(renewals).toHaveLength(count);
  });
});
