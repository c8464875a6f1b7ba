/**
 * `flashlex outbox list|retry|resend|drop`: the egress outbox as the owner sees it. Works through the
 * running serve (its control socket) or on the database file, like `messages`. The states are
 * documented in src/thing/egress/outbox.ts.
 */
import { InputError, UsageError } from "../../shared/errors.ts";
import { quoteGiven } from "../../shared/log.ts";
import { nearestSpelling } from "../../shared/spelling.ts";
import { isoOrAsIs, isoSeconds } from "../../shared/time.ts";
import type { OutboxChange, OutboxEntry, OutboxPage, OutboxState, ThingAccess } from "../../thing/local/access.ts";
import { type CommandSpec, choice } from "../command.ts";
import { ExitCode } from "../exit-codes.ts";
import { parseTime } from "../input.ts";
import { idList, printLine } from "../output.ts";
import { refuseListFlags, resumingAccessFromFlags, type ThingFlags, thingCommand } from "./common.ts";

/** What `outbox` does, as its first word says. */
const ACTIONS = ["list", "retry", "resend", "drop"];

export const outboxCommand: CommandSpec = thingCommand({
  name: "outbox",
  args: "<action> [...ids]",
  description:
    "Egress messages, pending, sent or refused: `list` (--state, --json), `retry ID...` (rejected → pending, due now), " +
    "`resend --since TIME` (sent → pending: for a hub restored from an older backup), `drop ID...`",
  options: [
    { flags: "--state <state>", description: "list: only pending, sent or rejected messages" },
    { flags: "--json", description: "list: one JSON object per line" },
    { flags: "--since <time>", description: "resend: every message sent at or after this time (ISO date-time or Unix seconds) goes again" },
  ],
  run([action, ...ids], options) {
    // the action first: a flag is judged against an action that exists (`outbox resnd --since`)
    if (!ACTIONS.includes(String(action))) {
      const meant = nearestSpelling(String(action), ACTIONS);
      throw new UsageError(
        `outbox: unknown action ${quoteGiven(String(action))} (${ACTIONS.join(", ")})${meant ? `; did you mean flashlex outbox ${meant}?` : ""}`,
      );
    }
    if (action !== "resend" && options.since !== undefined) throw new UsageError(`--since is an option of \`outbox resend\`, not of \`outbox ${action}\``);
    if (action === "list") {
      if (ids.length) throw new UsageError("outbox list takes no ids");
      return outboxList(options);
    }
    refuseListFlags("outbox", String(action), options, ["state", "json"], action === "resend" ? "--since TIME only" : undefined);
    if (action === "resend") return outboxResend(options, ids);
    return action === "retry" ? outboxRetry(options, ids) : outboxDrop(options, ids);
  },
});

interface OutboxListFlags extends ThingFlags {
  state?: string;
  json?: boolean;
}

const STATES: readonly OutboxState[] = ["pending", "sent", "rejected"];
/** The most entries `list` asks for at once (each body may be 256 KiB). */
const LIST_PAGE = 32;

async function outboxList(flags: OutboxListFlags): Promise<number> {
  const state = choice(flags.state, "--state", STATES);
  // a serve that stops or restarts during the listing: it goes on from the next serve or the file
  const access = await resumingAccessFromFlags(flags);
  try {
    // A page at a time, as `messages list` reads: an outbox of any size is one page in memory
    // here and in serve (it grows without bound while the hub is away: offlinePublishQueueing -1).
    let after: OutboxPage["after"];
    for (;;) {
      const page = await access.listOutbox(state, { after, limit: LIST_PAGE });
      for (const entry of page) printLine(flags.json ? JSON.stringify(toJson(entry)) : toLine(entry));
      if (page.length < LIST_PAGE) return ExitCode.OK;
      const last = page[page.length - 1]!;
      after = { createdAt: last.created_at, messageId: last.message_id };
    }
  } finally {
    access.close();
  }
}

/** rejected (or pending) → pending, due now; exit 65 when an id is unknown or already sent. */
function outboxRetry(flags: ThingFlags, ids: string[]): Promise<number> {
  return changeOutbox(flags, ids, "retried", (access, parsed) => access.retryOutbox(parsed));
}

/**
 * sent → pending, due now, for every message this thing sent at or after `--since`: a hub restored
 * from a backup made before they came has lost them, and the things still hold them for
 * `expireSeconds` after they were made. Each goes under its message id, which a FlashLex hub
 * stores once while it keeps the message. 0 also when none was found (said on stderr, with why).
 */
async function outboxResend(flags: ThingFlags & { since?: string }, ids: string[]): Promise<number> {
  if (ids.length) throw new UsageError("outbox resend takes --since TIME only, not message ids: the messages sent at or after TIME go again");
  if (flags.since === undefined) throw new UsageError("outbox resend needs --since TIME: the messages sent at or after it go again");
  const since = parseTime(String(flags.since), "--since")! * 1000;
  if (since < 0) throw new UsageError(`--since ${quoteGiven(String(flags.since))} is before 1970: no message was sent then`);
  const access = await resumingAccessFromFlags(flags);
  try {
    const { changed } = await access.resendOutbox(since);
    if (changed.length) {
      printLine(`resending ${changed.length} message${changed.length === 1 ? "" : "s"} sent since ${isoSeconds(since)}: ${idList(changed)}`);
      // on the file: nothing sends them until a serve runs on this data directory
      if (access.via === "database") console.error("outbox resend: serve is not running here: they go once `flashlex serve` runs on this data directory");
    } else if (since > Date.now()) {
      console.error(`outbox resend: ${isoSeconds(since)} is in the future (times without a zone are UTC): nothing was sent since`);
    } else {
      console.error(
        `outbox resend: no message sent since ${isoSeconds(since)} is kept (a sent message is kept for db.expireSeconds after it was made, see config.yml; outbox list --state sent shows what is)`,
      );
    }
    return ExitCode.OK;
  } finally {
    access.close();
  }
}

/** Deletes entries in any state; exit 65 when an id is unknown. */
function outboxDrop(flags: ThingFlags, ids: string[]): Promise<number> {
  return changeOutbox(flags, ids, "dropped", (access, parsed) => access.dropOutbox(parsed));
}

async function changeOutbox(
  flags: ThingFlags,
  ids: string[],
  verb: string,
  change: (access: ThingAccess, ids: string[]) => Promise<OutboxChange>,
): Promise<number> {
  if (!ids.length) throw new UsageError("give at least one message id (see flashlex outbox list)");
  const parsed = ids.map(String);
  const empty = parsed.find((id) => !id.trim());
  if (empty !== undefined) throw new UsageError(`not a message id: ${quoteGiven(empty)}`);
  const access = await resumingAccessFromFlags(flags);
  try {
    const result = await change(access, parsed);
    if (result.changed.length) printLine(`${verb}: ${result.changed.join(" ")}`);
    // thrown, not printed: said as every other failure is (`flashlex:`, and the config's and root's notes)
    const refused = [
      ...(result.sent.length
        ? [`already sent, left alone: ${idList(result.sent)} (a hub restored from an older backup lost it? outbox resend --since TIME)`]
        : []),
      ...(result.missing.length ? [`no message with id ${idList(result.missing)}`] : []),
    ];
    if (refused.length) throw new InputError(`${refused.join("; ")}; see flashlex outbox list`);
    return ExitCode.OK;
  } finally {
    access.close();
  }
}

/** A time column as ISO 8601; null stays null (not yet). */
function iso(ms: unknown): string | null {
  return ms === null || ms === undefined ? null : isoOrAsIs(ms);
}

function bodyText(entry: OutboxEntry): { body?: string; bodyBase64?: string } {
  const raw: unknown = entry.body;
  if (raw instanceof Uint8Array) return { bodyBase64: Buffer.from(raw).toString("base64") };
  return { body: typeof raw === "string" ? raw : String(raw) };
}

function toJson(entry: OutboxEntry) {
  return {
    messageId: entry.message_id,
    state: entry.state,
    via: entry.via,
    createdAt: iso(entry.created_at),
    attempts: entry.attempts,
    nextAttemptAt: entry.state === "pending" ? iso(entry.next_attempt_at) : null,
    sentAt: iso(entry.sent_at),
    lastError: entry.last_error,
    responseStatus: entry.response_status,
    thingId: entry.thing_id,
    ...bodyText(entry),
  };
}

/** id, state, via, created, attempts, then when it goes next (pending), when it went (sent) or why not (rejected). */
function toLine(entry: OutboxEntry): string {
  const detail =
    entry.state === "pending"
      ? `next ${iso(entry.next_attempt_at)}${entry.last_error ? `\t${entry.last_error}` : ""}`
      : entry.state === "sent"
        ? `sent ${iso(entry.sent_at)}`
        : `${entry.last_error ?? ""}`;
  return [entry.message_id, entry.state, entry.via, iso(entry.created_at), `attempts ${entry.attempts}`, detail].join("\t");
}
