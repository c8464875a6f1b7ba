/**
 * A bound on the log lines outsiders can cause. The hub writes one line per refusal of what a
 * thing or a client sent (a topic it may not subscribe to, a token that does not verify, a
 * cross-site form), which is what an operator needs, until someone sends them by the thousand:
 * one SUBSCRIBE of 30,000 topics grew the hub's log by 9 MB in 2 s, and under systemd,
 * journald's own rate limit then dropped the hub's other lines with them.
 */
import type { Fields, Logger } from "./log.ts";

export interface LogBudget {
  /** the events that are counted: refusals of outside input */
  events: ReadonlySet<string>;
  /** lines of one event written per window (default 20) */
  lines?: number;
  /** the window, in ms (default 10,000) */
  windowMs?: number;
}

interface Spend {
  start: number;
  written: number;
  suppressed: number;
  /** who the suppressed lines were about (a thing, a thing id, an address), at most MAX_SOURCES */
  sources: Set<string>;
  /** the last of them: a flood of junk does not hide the one line after it entirely */
  last?: string;
  level: "info" | "warn";
  timer?: ReturnType<typeof setTimeout>;
}

const MAX_SOURCES = 1000;

/** What a line is about, as the hub's refusal lines name it. */
function sourceOf(fields: Fields | undefined): string | undefined {
  const value = fields?.thing ?? fields?.thing_id ?? fields?.clientId ?? fields?.remote ?? fields?.path;
  return value === undefined || value === null ? undefined : String(value);
}

/**
 * `log`, with each event of `budget.events` written at most `lines` times per `windowMs` (the
 * whole process, children included); what goes past is counted, and once its window ends one
 * line of the event says how many were not written, about how many sources (a thing, a thing id,
 * an address) and the last one (`suppressed=N window_s=10 sources=K last=...`). Other events,
 * and debug and error lines, pass as they are.
 */
export function budgetLogger(log: Logger, budget: LogBudget): Logger {
  return withSpends(log, budget, new Map());
}

function withSpends(log: Logger, budget: LogBudget, spends: Map<string, Spend>): Logger {
  const lines = budget.lines ?? 20;
  const windowMs = budget.windowMs ?? 10_000;
  const report = (event: string, spend: Spend) => {
    if (spend.suppressed > 0) {
      log[spend.level](event, {
        suppressed: spend.suppressed,
        window_s: windowMs / 1000,
        sources: spend.sources.size >= MAX_SOURCES ? `${MAX_SOURCES}+` : spend.sources.size,
        last: spend.last,
        note: `${spend.suppressed} more lines of this event were not written (at most ${lines} in ${windowMs / 1000} s)`,
      });
    }
  };
  const spent = (level: "info" | "warn", event: string, fields?: Fields) => {
    if (!budget.events.has(event)) return log[level](event, fields);
    const now = Date.now();
    let spend = spends.get(event);
    if (!spend || now - spend.start >= windowMs) {
      if (spend) {
        clearTimeout(spend.timer);
        report(event, spend);
      }
      spend = { start: now, written: 0, suppressed: 0, sources: new Set(), level };
      spends.set(event, spend);
    }
    if (spend.written < lines) {
      spend.written++;
      return log[level](event, fields);
    }
    spend.suppressed++;
    const source = sourceOf(fields);
    if (source !== undefined) {
      spend.last = source;
      if (spend.sources.size < MAX_SOURCES) spend.sources.add(source);
    }
    if (!spend.timer) {
      const ending = spend;
      ending.timer = setTimeout(
        () => {
          if (spends.get(event) === ending) spends.delete(event);
          report(event, ending);
        },
        windowMs - (now - ending.start),
      );
      ending.timer.unref?.();
    }
  };
  return {
    debug: (event, fields) => log.debug(event, fields),
    info: (event, fields) => spent("info", event, fields),
    warn: (event, fields) => spent("warn", event, fields),
    error: (event, fields) => log.error(event, fields),
    child: (fields) => withSpends(log.child(fields), budget, spends),
  };
}
