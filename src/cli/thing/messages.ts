import { InputError, UsageError } from "../../shared/errors.ts";
import { hasUnsafeCharacters, quoteGiven, quoteLogText } from "../../shared/log.ts";
import { nearestSpelling } from "../../shared/spelling.ts";
import { isoOrAsIs } from "../../shared/time.ts";
import type { IngressMessage, IngressQuery, ThingAccess } from "../../thing/local/access.ts";
import { type CommandSpec, untilSignal } from "../command.ts";
import { ExitCode } from "../exit-codes.ts";
import { countFlag, parseTime } from "../input.ts";
import { idList, printLine } from "../output.ts";
import { refuseListFlags, resumingAccessFromFlags, runningServeFromFlags, type ThingFlags, thingCommand } from "./common.ts";

/** The flags only `list` takes, as cac keys them. */
const LIST_FLAGS = ["json", "follow", "all", "acked", "topic", "since", "limit"] as const;

/** What `messages` does, as its first word says. */
const ACTIONS = ["list", "ack", "delete"];

export const messagesCommand: CommandSpec = thingCommand({
  name: "messages",
  args: "<action> [...ids]",
  description: "What arrived: `list` (--json, --follow, --all, --acked, --topic, --since, --limit), `ack ID...`, `delete ID...`",
  options: [
    { flags: "--json", description: "list: one JSON object per line" },
    { flags: "--follow", description: "list: keep printing messages as they arrive, until Ctrl-C" },
    { flags: "--all", description: "list: acknowledged messages too" },
    { flags: "--acked", description: "list: only acknowledged messages" },
    { flags: "--topic <topic>", description: "list: only this topic" },
    { flags: "--since <time>", description: "list: received at or after (ISO date or Unix seconds)" },
    { flags: "--limit <n>", description: "list: at most N messages (with --follow: stop after N)" },
  ],
  run([action, ...ids], options) {
    if (action === "list") {
      if (ids.length) throw new UsageError("messages list takes no ids");
      return messagesList(options);
    }
    if (action === "ack" || action === "delete") refuseListFlags("messages", action, options, LIST_FLAGS);
    if (action === "ack") return messagesAck(options, ids);
    if (action === "delete") return messagesDelete(options, ids);
    const meant = nearestSpelling(String(action), ACTIONS);
    throw new UsageError(
      `messages: unknown action ${quoteGiven(String(action))} (${ACTIONS.join(", ")})${meant ? `; did you mean flashlex messages ${meant}?` : ""}`,
    );
  },
});

interface ListFlags extends ThingFlags {
  json?: boolean;
  follow?: boolean;
  all?: boolean;
  acked?: boolean;
  topic?: string;
  since?: string;
  limit?: string;
}

const FOLLOW_POLL_MS = 250;
/** The most messages `list` asks for at once (each may be 256 KiB). */
const LIST_PAGE = 32;

/**
 * The application's view of what arrived: unacknowledged messages unless told otherwise. With
 * --follow it keeps printing until a signal, until --limit messages were printed in all (as
 * `mosquitto_sub -C` does), or until its reader closes stdout, following through the running
 * serve: only serve stores ingress, so while none runs (not started yet, a restart, an update)
 * there is nothing to miss, and the follower waits for the next one instead of holding the
 * database (which the armv7 build's serve must have to itself).
 */
async function messagesList(flags: ListFlags): Promise<number> {
  if (flags.all && flags.acked) throw new UsageError("--all and --acked do not go together");
  const query: IngressQuery = {
    state: flags.all ? "all" : flags.acked ? "acked" : "unacked",
    topic: flags.topic === undefined ? undefined : String(flags.topic),
    since: flags.since === undefined ? undefined : parseTime(String(flags.since), "--since")! * 1000,
    limit: countFlag(flags.limit, "--limit"),
  };
  // a serve that stops or restarts during the listing: it goes on from the next serve or the file
  let access: ThingAccess | undefined = await resumingAccessFromFlags(flags);
  let stop = false;
  // A follower listens before it prints its first line: a signal the moment a reader saw that
  // line ends the follow with 0 instead of killing it (143).
  if (flags.follow) untilSignal().then(() => (stop = true));
  // A follower writes through process.stdout, which reports a reader that went away (EPIPE: the
  // end of `| head -n1`) as an event while it waits for more; printLine's writes would hold the
  // event loop while a slow reader reads.
  const writeLine = flags.follow ? followerOutput(() => (stop = true)) : (line: string) => printLine(line);
  try {
    let lastId = 0;
    let printed = 0;
    const print = async (rows: IngressMessage[]) => {
      for (const row of rows) {
        if (stop) return;
        await writeLine(flags.json ? JSON.stringify(toJson(row)) : toLine(row));
        lastId = row.id;
        printed++;
      }
    };
    // A page at a time, from serve or the file: a backlog of any size is one page in memory here
    // (and in serve), where the whole list was (2,000 messages of 100 KB: 1.5 GB).
    while (!stop) {
      const wanted = query.limit === undefined ? LIST_PAGE : Math.min(LIST_PAGE, query.limit - printed);
      if (wanted <= 0) break;
      const page = await access.listMessages({ ...query, afterId: lastId, limit: wanted });
      await print(page);
      if (page.length < wanted) break;
    }
    if (!flags.follow) return ExitCode.OK;
    const wanted = query.limit;
    let caughtUp = true;
    let serveState = "is not running";
    while (!stop && (wanted === undefined || printed < wanted)) {
      if (access?.via !== "serve") {
        access?.close();
        access = await nextServe(flags, () => stop, serveState);
        if (!access) break;
        continue;
      }
      serveState = "stopped"; // from now on a serve that goes away is one that stopped
      // a burst is read a page after the other, as fast as the reader takes it
      if (caughtUp) await sleep(FOLLOW_POLL_MS);
      try {
        const limit = Math.min(LIST_PAGE, wanted === undefined ? LIST_PAGE : wanted - printed);
        const page = await access.listMessages({ ...query, afterId: lastId, limit });
        await print(page);
        caughtUp = page.length < limit;
      } catch (err) {
        const { LostServeError } = await import("../../thing/local/client.ts");
        if (!(err instanceof LostServeError)) throw err;
        access = undefined;
      }
    }
    return ExitCode.OK;
  } finally {
    access?.close();
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Writes a line to stdout, resolving once stdout took it (a slow reader's pipe is full: after its
 * drain), so a follower holds a page, not the backlog (its first listing, unawaited, held 100 MB
 * for a reader yet to read 59 MB). `onClosed` hears once that its reader is gone (EPIPE), and a
 * write waiting for it resolves.
 */
function followerOutput(onClosed: () => void): (line: string) => Promise<void> {
  let readerGone: () => void = () => {};
  const gone = new Promise<void>((resolve) => (readerGone = resolve));
  process.stdout.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code !== "EPIPE") throw err;
    onClosed();
    readerGone();
  });
  return async (line) => {
    if (process.stdout.write(`${line}\n`)) return;
    await Promise.race([new Promise<void>((resolve) => process.stdout.once("drain", resolve)), gone]);
  };
}

/**
 * The access of the next serve to answer on the thing's data directory, polled; undefined once
 * `stopped()`. Says once on stderr that serve `is not running` or `stopped`, and that it waits.
 */
async function nextServe(flags: ThingFlags, stopped: () => boolean, serveState: string): Promise<ThingAccess | undefined> {
  console.error(`messages: serve ${serveState}; following once it runs (Ctrl-C to stop)`);
  while (!stopped()) {
    await sleep(FOLLOW_POLL_MS);
    const serve = await runningServeFromFlags(flags);
    if (serve) return serve;
  }
  return undefined;
}

function messagesAck(flags: ThingFlags, ids: string[]): Promise<number> {
  return changeMessages(flags, ids, "acknowledged", (access, parsed) => access.ackMessages(parsed));
}

function messagesDelete(flags: ThingFlags, ids: string[]): Promise<number> {
  return changeMessages(flags, ids, "deleted", (access, parsed) => access.deleteMessages(parsed));
}

async function changeMessages(
  flags: ThingFlags,
  ids: string[],
  verb: string,
  change: (access: ThingAccess, ids: number[]) => Promise<number[]>,
): Promise<number> {
  if (!ids.length) throw new UsageError("give at least one message id");
  const parsed = ids.map((id) => {
    if (!/^[1-9]\d*$/.test(id) || !Number.isSafeInteger(Number(id))) {
      throw new UsageError(`not a message id: ${quoteGiven(id)} (ids are whole numbers from 1 to ${Number.MAX_SAFE_INTEGER})`);
    }
    return Number(id);
  });
  const access = await resumingAccessFromFlags(flags);
  try {
    const done = new Set(await change(access, parsed));
    const missing = parsed.filter((id) => !done.has(id));
    if (done.size) printLine(`${verb}: ${[...done].join(" ")}`);
    // thrown, not printed: said as every other failure is (`flashlex:`, and the config's and root's notes)
    if (missing.length) throw new InputError(`no message with id ${idList(missing)}; see flashlex messages list`);
    return ExitCode.OK;
  } finally {
    access.close();
  }
}

function payloadText(row: IngressMessage): { payload?: string; payloadBase64?: string } {
  return typeof row.payload === "string" ? { payload: row.payload } : { payloadBase64: Buffer.from(row.payload).toString("base64") };
}

function toJson(row: IngressMessage) {
  return {
    id: row.id,
    topic: row.topic,
    ...payloadText(row),
    qos: row.qos,
    retain: Boolean(row.retain),
    receivedAt: isoOrAsIs(row.received_at),
    ackedAt: row.acked_at === null ? null : isoOrAsIs(row.acked_at),
  };
}

/**
 * One row per line, fields split by tabs. A field holding a control or invisible character (a
 * tab or newline would forge fields or rows; an escape sequence would reach the terminal) is
 * written as a JSON string with those characters escaped, as the log does; others as they are.
 */
function toLine(row: IngressMessage): string {
  const { payload, payloadBase64 } = payloadText(row);
  const shown = payload ?? `base64:${payloadBase64}`;
  return `${row.id}\t${isoOrAsIs(row.received_at)}\t${safeField(row.topic)}\t${safeField(shown)}${row.acked_at ? "\t(acked)" : ""}`;
}

function safeField(text: string): string {
  return hasUnsafeCharacters(text) ? quoteLogText(text) : text;
}
