/**
 * URLs from the command line and configs (src/shared/strict-url.ts): whitespace and control
 * characters the WHATWG parser would drop or trim without a word are refused where each is read.
 */
import { describe, expect, test } from "bun:test";
import { parseBrokerUrl } from "../../src/hub/broker/external.ts";
import { parseHubDatabase } from "../../src/hub/store/database-url.ts";
import { parseUrlStrictly } from "../../src/shared/strict-url.ts";
import { normaliseHubUrl } from "../../src/thing/enrol/enrol.ts";

describe("parseUrlStrictly", () => {
  test("a URL with a tab, CR, LF, space or other control character anywhere is none (new URL took http://hub<CR>.lan for http://hub.lan)", () => {
    expect(new URL("http://hub\r.lan:8080/").href).toBe("http://hub.lan:8080/");
    for (const bad of [
      "http://hub\r.lan:8080",
      "http://hub.lan:80\t80",
      " http://hub.lan",
      "http://hub.lan/\n",
      "http://hub.lan/\u0000",
      "http://hub lan",
      "not a url",
    ]) {
      expect(parseUrlStrictly(bad), JSON.stringify(bad)).toBeUndefined();
    }
    // invisible characters the host processing maps to nothing: enroll wrote http://127.0.0.1:18080 for a typo
    for (const invisible of ["\u00ad", "\u200b", "\u2060", "\u034f", "\ufe0f", "\u00a0"]) {
      expect(new URL(`http://hub${invisible === "\u00a0" ? "" : invisible}.lan/`).host).toBe("hub.lan");
      expect(parseUrlStrictly(`http://hub${invisible}.lan:8080/dev/v1`), JSON.stringify(invisible)).toBeUndefined();
    }
    expect(parseUrlStrictly("http://bücher.example/")?.host).toBe("xn--bcher-kva.example");
    expect(parseUrlStrictly("http://[::1]:8080/")?.port).toBe("8080");
    expect(parseUrlStrictly("https://hub.example:8080/dev/v1")?.port).toBe("8080");
  });

  test("each reader refuses such a URL naming its flag or setting", () => {
    expect(() => normaliseHubUrl("https://hub\r.example:8080/dev/v1")).toThrow("--hub must be the hub's API URL");
    expect(normaliseHubUrl("https://hub.example:8080/dev/v1/")).toBe("https://hub.example:8080/dev/v1");
    expect(() => parseBrokerUrl("mqtts://broker\n.lan:8883")).toThrow('broker URL is not a URL: "mqtts://broker\\n.lan:8883"');
    expect(parseBrokerUrl("mqtts://broker.lan")).toEqual({ host: "broker.lan", port: 8883 });
    // a host no resolver takes is named, cut, before a lookup echoes it whole (verify pass 26, F2)
    expect(() => parseBrokerUrl(`mqtts://${"a".repeat(64)}.lan`)).toThrow(
      `broker URL: its host is longer than a DNS name may be (253 characters, 63 between dots): "${"a".repeat(48)}…"`,
    );
    expect(parseBrokerUrl(`mqtts://${"a".repeat(63)}.lan`).host).toBe(`${"a".repeat(63)}.lan`);
    expect(() => parseHubDatabase("postgres://flashlex@db\t.lan/hub", "hub.db", "--db")).toThrow("--db: not a URL");
    // surrounding spaces are trimmed by parseHubDatabase itself, as before
    expect(parseHubDatabase(" postgres://flashlex@db.lan/hub ", "hub.db", "--db").kind).toBe("postgres");
  });
});
