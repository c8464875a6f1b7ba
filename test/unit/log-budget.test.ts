import { expect, test } from "bun:test";
import { createLogger } from "../../src/shared/log.ts";
import { budgetLogger } from "../../src/shared/log-budget.ts";

/** A logger writing into `lines`, with `events` budgeted to 3 lines per 100 ms. */
function budgeted(events: string[]) {
  const lines: string[] = [];
  const log = budgetLogger(createLogger({ write: (line) => lines.push(line) }), { events: new Set(events), lines: 3, windowMs: 100 });
  return { lines, log };
}

test("a budgeted event is written at most `lines` times a window, then once more saying how many were not; others pass as they are", async () => {
  const { lines, log } = budgeted(["mqtt.subscribe.refused", "hub.collect_refused"]);
  const child = log.child({ component: "broker" });
  for (let i = 0; i < 1000; i++) (i % 2 ? child : log).warn("mqtt.subscribe.refused", { topic: `t${i}` });
  for (let i = 0; i < 5; i++) log.warn("hub.stop_timeout");
  log.error("mqtt.subscribe.refused", { topic: "an error is never held back" });
  const refused = () => lines.filter((l) => l.includes("mqtt.subscribe.refused"));
  expect(refused().length).toBe(4); // 3 warnings, the error
  expect(lines.filter((l) => l.includes("hub.stop_timeout")).length).toBe(5);
  await Bun.sleep(150);
  expect(refused().length).toBe(5);
  // how many sources the suppressed lines named, and the last: a flood does not hide the line after it entirely
  expect(refused().at(-1)).toMatch(/WARN +mqtt\.subscribe\.refused .*suppressed=997 window_s=0\.1 sources=0 /);
  for (let i = 0; i < 5; i++) log.warn("hub.collect_refused", { thing_id: `junk-${i % 2}` });
  log.warn("hub.collect_refused", { thing_id: "the-real-one" });
  await Bun.sleep(150);
  expect(lines.at(-1)).toMatch(/hub\.collect_refused .*suppressed=3 window_s=0\.1 sources=3 last=the-real-one /);
  // a new window writes again
  log.warn("mqtt.subscribe.refused", { topic: "later" });
  expect(refused().at(-1)).toContain("topic=later");
});
