/**
 * src/hub/enrolment: devices that enrol themselves with a token, keeping their key.
 *
 *   enrolment.ts  Enrolment: the use cases the CLI, the API and the console call
 *   tokens.ts     enrolment tokens: made, listed, revoked; the rules a token is checked by
 *   enrol.ts      one enrolment: token, name, CSR, certificate, the thing, all or nothing
 */
import type { Logger } from "../../shared/log.ts";
import type { HubHome } from "../home/home.ts";
import { ownerPrefix } from "../home/settings.ts";
import type { HubStore } from "../store/hub-store.ts";
import { type Enrolled, EnrolmentRefused, type EnrolmentRequest, enrol, enrolmentInfo } from "./enrol.ts";
import { EnrolmentTokens } from "./tokens.ts";

export interface EnrolmentDeps {
  home: HubHome;
  store: HubStore;
  log: Logger;
  /** Unix ms */
  now?: () => number;
}

/** Self-enrolment for one hub, as the CLI, API and console call it: `tokens` for the operator, `enrol` for a device. */
export class Enrolment {
  readonly tokens: EnrolmentTokens;
  private readonly now: () => number;

  constructor(private readonly deps: EnrolmentDeps) {
    this.now = deps.now ?? Date.now;
    this.tokens = new EnrolmentTokens(deps.store, this.now, ownerPrefix(deps.home.settings));
  }

  /** The owner prefix (the CN a device must ask for starts with it) and the CA, with its SHA-256 fingerprint. */
  info(): ReturnType<typeof enrolmentInfo> {
    return enrolmentInfo(this.deps.home);
  }

  /**
   * Enrols a device (enrol.ts). Every refusal is logged (`hub.enrol_refused`, with the name, the
   * reason and `remote`, the client's address when the caller knows it; never the token) and
   * thrown; a success is logged as `hub.thing_enrolled`.
   */
  async enrol(request: EnrolmentRequest, via: string, remote?: string): Promise<Enrolled> {
    const log = this.deps.log;
    const name = typeof request.name === "string" ? request.name.slice(0, 64) : undefined;
    try {
      const enrolled = await enrol(this.deps.home, this.deps.store, request, this.now);
      log.info("hub.thing_enrolled", {
        via,
        thing: enrolled.thing.name,
        id: enrolled.thing.id,
        // the token's id (public): a key named like a secret ("token") would be [redacted] in the log
        enrolled_with: enrolled.thing.enrolledWith,
        repeated: enrolled.repeated,
      });
      return enrolled;
    } catch (err) {
      if (err instanceof EnrolmentRefused || (err as { kind?: string }).kind === "conflict") {
        log.warn("hub.enrol_refused", { via, name, reason: (err as Error).message, remote });
      }
      throw err;
    }
  }
}
