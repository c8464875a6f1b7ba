/**
 * A hub for the bench rows: test/support's hub fixture (`hub init`, `hub thing create`, unzip,
 * all by the compiled binary) served with its log in a file, and a token signed beforehand with
 * a thing's own key (src/crypto/jwt.ts, what the agent signs).
 */
import { join } from "node:path";
import { signThingToken } from "../../src/crypto/jwt.ts";
import { binaryPath } from "../../test/support/binary.ts";
import type { HubFixture, HubThing } from "../../test/support/hub-fixture.ts";
import { type LoggedProcess, startLogged } from "./procs.ts";

/** `hub serve --dir` with its log in `<work>/<name>.log`, once it logged hub.started. */
export async function serveHub(hub: HubFixture, work: string, name = "hub"): Promise<LoggedProcess> {
  const serving = startLogged([binaryPath(), "hub", "serve", "--dir", hub.dir], join(work, `${name}.log`));
  await serving.waitFor(/hub\.started/, 30_000);
  return serving;
}

export const apiBase = (hub: HubFixture) => `http://127.0.0.1:${hub.apiPort}/dev/v1`;

export const collectUrl = (hub: HubFixture, thing: HubThing) => `${apiBase(hub)}/things/${thing.id}/collect`;

/** A collect token for `thing`, valid for the next 6 minutes (the agent's window). */
export const tokenFor = (thing: HubThing) => signThingToken({ thingId: thing.id, privateKey: thing.privateKey });

export const operatorHeaders = (hub: HubFixture) => ({ Authorization: `Bearer ${hub.token}`, "Content-Type": "application/json" });
