import { expect, test } from "bun:test";
import fc from "fast-check";
import { Backoff } from "../../src/thing/backoff.ts";

test("the quiet time doubles from base up to max, with jitter inside those bounds", () => {
  fc.assert(
    fc.property(fc.double({ min: 0.1, max: 5, noNaN: true }), fc.double({ min: 5, max: 60, noNaN: true }), fc.array(fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), { minLength: 1, maxLength: 20 }), (base, max, randoms) => {
      let i = 0;
      const backoff = new Backoff({ baseSeconds: base, maxSeconds: max, stableSeconds: 10 }, () => randoms[i++ % randoms.length]!);
      for (let attempt = 0; attempt < randoms.length; attempt++) {
        const delay = backoff.nextDelayMs();
        expect(delay).toBeGreaterThanOrEqual(Math.round(base * 1000));
        expect(delay).toBeLessThanOrEqual(Math.round(Math.min(max, base * 2 ** attempt) * 1000));
      }
    }),
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
