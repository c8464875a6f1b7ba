/**
 * A thing's data that outlives a serve restart: a restart is routine (a self-update, `systemctl
 * restart`, install-service run again), and a call that met one failed with 74 (ENOENT: "the
 * disk") or 69 (ECONNRESET: "queued"), which an application reads as fatal.
 */
import { FlashlexError } from "../../shared/errors.ts";
import type { ThingAccess } from "./access.ts";
import { LostServeError } from "./client.ts";

/** How many times one access goes on after the running serve went away under it. */
const RESUMES = 3;

/**
 * `first`, going on through the next serve or the database (`reopen`, as the access was opened)
 * when the running serve goes away under a call (stopped, restarted, killed: LostServeError), at
 * most RESUMES times in all:
 * - a read (a list) is asked again: a listing read by key (messages after an id, the outbox
 *   after a created/id pair) carries on where it was;
 * - a change (ack, delete, retry, drop) is asked again when serve never had it (no socket, a
 *   refused connection); cut off after it was sent, serve may have made it, and asked again it
 *   would answer otherwise (an id it deleted is "missing" the second time): FlashlexError
 *   try-later (75) saying so;
 * - a collect is never asked again here: its LostServeError says the message may be queued.
 * close() closes the access in use. Throws what the calls and `reopen` throw.
 */
export function resumingAccess(first: ThingAccess, reopen: () => Promise<ThingAccess>): ThingAccess {
  let current = first;
  let resumes = 0;
  const again = async <T>(call: (access: ThingAccess) => Promise<T>, change: boolean): Promise<T> => {
    for (;;) {
      try {
        return await call(current);
      } catch (err) {
        if (!(err instanceof LostServeError) || resumes >= RESUMES) throw err;
        if (change && err.asked) {
          throw new FlashlexError(`${err.message}: it went away with the request, which may have been done; list to see`, "try-later", { cause: err });
        }
        resumes++;
        current.close();
        current = await reopen();
      }
    }
  };
  return {
    get via() {
      return current.via;
    },
    get served() {
      return current.served;
    },
    listMessages: (query) => again((access) => access.listMessages(query), false),
    listOutbox: (state, page) => again((access) => access.listOutbox(state, page), false),
    ackMessages: (ids) => again((access) => access.ackMessages(ids), true),
    deleteMessages: (ids) => again((access) => access.deleteMessages(ids), true),
    retryOutbox: (ids) => again((access) => access.retryOutbox(ids), true),
    resendOutbox: (sentSince) => again((access) => access.resendOutbox(sentSince), true),
    dropOutbox: (ids) => again((access) => access.dropOutbox(ids), true),
    collect: (body, via) => current.collect(body, via),
    close: () => current.close(),
  };
}
