/**
 * `hub init --broker-listen` and `--metrics-listen` (new-user pass 26, F11): a hub kept on this
 * machine, or with its metrics elsewhere, needed a hub.yml edit before its first `serve`.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { type InitHubOptions, initHub } from "../../src/hub/home/init.ts";
import { scratchDir } from "../support/scratch.ts";

const dir = scratchDir("flashlex-hub-init-listen-");

describe("hub init's listen addresses", () => {
  test("the broker's listen address and the metrics' go into hub.yml as given (false: no metrics); left out, the broker listens on every interface and metrics stay unwritten", async () => {
    const settingsOf = async (name: string, options: Partial<InitHubOptions>) => {
      await initHub({ dir: join(dir, name), ...options });
      return parse(readFileSync(join(dir, name, "hub.yml"), "utf8")).hub;
    };
    const narrowed = await settingsOf("narrowed", { brokerListenHost: "127.0.0.1", metricsListen: "127.0.0.1:47993" });
    expect(narrowed.broker.listenHost).toBe("127.0.0.1");
    expect(narrowed.metrics).toEqual({ listen: "127.0.0.1:47993" });
    expect((await settingsOf("off", { metricsListen: false })).metrics).toEqual({ listen: false });
    const plain = await settingsOf("plain", {});
    expect(plain.broker.listenHost).toBe("0.0.0.0");
    expect(plain.metrics).toBeUndefined();
  });

  test("a listen address that is no address is refused (64) naming the flag, and no home is made", async () => {
    await expect(initHub({ dir: join(dir, "bad-broker"), brokerListenHost: "not an address" })).rejects.toThrow(
      '--broker-listen must be an IP address (0.0.0.0, 127.0.0.1, ::) or a host name of this machine, not "not an address"',
    );
    await expect(initHub({ dir: join(dir, "bad-metrics"), metricsListen: "nope" })).rejects.toThrow(
      "hub init: --metrics-listen (metrics.listen): must be HOST:PORT",
    );
    // digits and dots that are no address, and words for none (verify pass 32, F8: 0 listened everywhere)
    for (const given of ["0", "1.2.3", "999.1.1.1", "off", "None"]) {
      await expect(initHub({ dir: join(dir, "bad-broker"), brokerListenHost: given })).rejects.toThrow("--broker-listen must be an IP address");
    }
    for (const name of ["bad-broker", "bad-metrics"]) expect(() => readFileSync(join(dir, name, "hub.yml"))).toThrow(/ENOENT/);
  });
});
