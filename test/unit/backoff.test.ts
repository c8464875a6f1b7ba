import { expect, test } from "bun:test";
import fc from "fast-check";
import { Backoff } from "../../src/thing/mqtt/backoff.ts";

test("the quiet time doubles from base up to max, with jitter inside those bounds", () => {
  fc.assert(
    fc.property(
      fc.double({ min: 0.1, max: 5, noNaN: true }),
      fc.double({ min: 5, max: 60, noNaN: true }),
      fc.array(fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), { minLength: 1, maxLength: 20 }),
      (base, max, randoms) => {
        let i = 0;
        const backoff = new Backoff({ baseSeconds: base, maxSeconds: max, stableSeconds: 10 }, () => randoms[i++ % randoms.length]!);
        for (let attempt = 0; attempt < randoms.length; attempt++) {
          const delay = backoff.nextDelayMs();
          expect(delay).toBeGreaterThanOrEqual(Math.round(base * 1000));
          expect(delay).toBeLessThanOrEqual(Math.round(Math.min(max, base * 2 ** attempt) * 1000));
        }
      },
    ),
    { numRuns: 100 },
  );
});

test("a connection that stayed up for the stable time starts over from base; a short one does not", () => {
  const top = () => 0.999999;
  const backoff = new Backoff({ baseSeconds: 1, maxSeconds: 30, stableSeconds: 10 }, top);
  for (let i = 0; i < 5; i++) backoff.nextDelayMs();
  backoff.connected(0);
  backoff.disconnected(2_000);
  expect(backoff.nextDelayMs()).toBe(30_000);
  backoff.connected(10_000);
  backoff.disconnected(20_000);
  expect(backoff.nextDelayMs()).toBe(1_000);
});

test("connections the broker closes before they are stable, three in a row, mean a takeover: waits of 15 s and more", () => {
  const backoff = new Backoff({ baseSeconds: 0.2, maxSeconds: 1, stableSeconds: 10 }, () => 0);
  for (let drop = 1; drop <= 3; drop++) {
    expect(backoff.takeoverSuspected).toBe(false);
    backoff.connected(drop * 1000);
    backoff.disconnected(drop * 1000 + 500, "broker");
  }
  expect(backoff.takeoverSuspected).toBe(true);
  expect(backoff.nextDelayMs()).toBe(15_000);
  backoff.connected(100_000);
  backoff.disconnected(100_500, "broker");
  expect(backoff.nextDelayMs()).toBe(30_000);
  // a stable connection ends the episode
  backoff.connected(200_000);
  backoff.disconnected(220_000, "broker");
  expect(backoff.takeoverSuspected).toBe(false);
  expect(backoff.nextDelayMs()).toBe(200);
});

test("drops with an error, or made by us, or failed connects do not count as a takeover", () => {
  const backoff = new Backoff({ baseSeconds: 0.2, maxSeconds: 1, stableSeconds: 10 }, () => 0);
  for (const cause of ["broker", "broker", "error", "broker", "broker", "self"] as const) {
    backoff.connected(0);
    backoff.disconnected(100, cause);
    backoff.disconnected(200, "broker"); // a connect attempt that never got a CONNACK
  }
  expect(backoff.takeoverSuspected).toBe(false);
});

test("short connections with failed connects between them are a broker restarting, not a takeover (attack round 13, F7: three restarts in 30 s gave waits of 25 s to 5 min)", () => {
  const backoff = new Backoff({ baseSeconds: 0.2, maxSeconds: 1, stableSeconds: 10 }, () => 0);
  for (let restart = 1; restart <= 4; restart++) {
    backoff.connected(restart * 5000);
    backoff.disconnected(restart * 5000 + 1000, "broker"); // the broker stopping closes the connection
    backoff.disconnected(restart * 5000 + 2000, "error"); // ECONNREFUSED while it is down
  }
  expect(backoff.takeoverSuspected).toBe(false);
});

test("after the broker refused a subscription the next wait is the ceiling", () => {
  const backoff = new Backoff({ baseSeconds: 1, maxSeconds: 30, stableSeconds: 10 }, () => 0);
  backoff.penalise();
  expect(backoff.nextDelayMs()).toBe(30_000);
  expect(backoff.nextDelayMs()).toBe(1_000);
});
