/**
 * Mosquitto's dynamic security plugin (mosquitto_dynamic_security.so, in Debian's mosquitto
 * 2.0.11 package), as the hub uses it: only to shut revoked things out at run time. The topic
 * rules stay in the ACL file (mosquitto-config.ts); see docs/broker.md, "Revocation".
 *
 * Spec: the plugin's control API (Mosquitto 2.0 `plugins/dynamic-security/README.md`): a client
 * publishes `{"commands":[{command, ...args, correlationData}]}` to `$CONTROL/dynamic-security/v1`
 * and receives `{"responses":[{command, error?, correlationData}]}` on
 * `$CONTROL/dynamic-security/v1/response`. Only a client whose dynsec roles grant those two topics
 * may do so (the hub, below).
 *
 * What 2.0.11 does, measured on Debian 12 (test/integration/mosquitto-revocation.test.ts):
 * - Dynsec's password check never runs for a certificate identity (`use_identity_as_username`):
 *   a `disabled` client still gets CONNACK 0 when it reconnects with its certificate. What bites
 *   is the ACL: a client listed in dynsec is judged by its roles, so a revoked thing carries the
 *   `flashlex-revoked` role that denies every publish, delivery and subscription (SUBACK 0x80).
 * - A client dynsec does not know is deferred to the next check, the ACL file: every thing that is
 *   not revoked keeps its `%u` rules, and the broker holds no per-thing state for them.
 * - `disableClient` disconnects the client's open connection at once (log: "been disconnected
 *   by administrative action"). There is no `kickClient` in 2.0.11 ("Unknown command").
 */

/** The dynsec role every revoked thing gets: nothing in, nothing out. */
export const REVOKED_ROLE = "flashlex-revoked";
/** The hub's dynsec role: the control topics and nothing else (its topic rights are in the ACL file). */
export const HUB_ADMIN_ROLE = "flashlex-hub-admin";
export const DYNSEC_TOPIC = "$CONTROL/dynamic-security/v1";
export const DYNSEC_RESPONSE_TOPIC = `${DYNSEC_TOPIC}/response`;
/** Where Debian's mosquitto package puts the plugin. */
export const DEBIAN_DYNSEC_PLUGIN = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so";

export interface DynsecAcl {
  acltype: "publishClientSend" | "publishClientReceive" | "subscribeLiteral" | "subscribePattern" | "unsubscribeLiteral" | "unsubscribePattern";
  topic: string;
  allow: boolean;
  priority?: number;
}

export interface DynsecCommand {
  command: string;
  [arg: string]: unknown;
}

/** The revoked role's ACLs: deny everything, ahead of anything else (priority). */
export function revokedRoleAcls(): DynsecAcl[] {
  return (["publishClientSend", "publishClientReceive", "subscribePattern", "unsubscribePattern"] as const).map((acltype) => ({
    acltype,
    topic: "#",
    allow: false,
    priority: 1000,
  }));
}

/** The hub admin role's ACLs: send commands, subscribe to and receive the answers. */
export function hubAdminAcls(): DynsecAcl[] {
  return [
    { acltype: "publishClientSend", topic: DYNSEC_TOPIC, allow: true },
    { acltype: "subscribeLiteral", topic: DYNSEC_RESPONSE_TOPIC, allow: true },
    { acltype: "publishClientReceive", topic: DYNSEC_RESPONSE_TOPIC, allow: true },
  ];
}

/**
 * The plugin's initial state file (`plugin_opt_config_file`), read once when Mosquitto starts:
 * the hub (`hubName`, certificate CN) with the admin role, the revoked role, and `revokedNames`
 * already shut out. Every default access is false so that dynsec only ever *denies* (revoked
 * things) or grants the control topics (the hub); for anything else it defers to the ACL file.
 * No client has a password: nobody can log in to dynsec with one.
 */
export function renderDynsecState(hubName: string, revokedNames: readonly string[]): string {
  const state = {
    defaultACLAccess: { publishClientSend: false, publishClientReceive: false, subscribe: false, unsubscribe: false },
    clients: [
      { username: hubName, roles: [{ rolename: HUB_ADMIN_ROLE }] },
      ...[...new Set(revokedNames)].map((username) => ({ username, disabled: true, roles: [{ rolename: REVOKED_ROLE }] })),
    ],
    groups: [],
    roles: [
      { rolename: HUB_ADMIN_ROLE, textdescription: "the FlashLex hub: dynamic-security commands only", acls: hubAdminAcls() },
      { rolename: REVOKED_ROLE, textdescription: "revoked FlashLex things: nothing in, nothing out", acls: revokedRoleAcls() },
    ],
  };
  return `${JSON.stringify(state, null, 2)}\n`;
}

/**
 * The commands that shut `thingName` out, idempotent as a sequence (one document: Mosquitto runs
 * them one after the other while handling one PUBLISH, so no packet of the thing falls between).
 * createClient with the role is the ACL denial for a new client. For a client that already
 * exists ("already exists", harmless) removeClientRole + addClientRole make sure it holds the role
 * whatever it held before: 2.0.11 answers addClientRole for a role already held with
 * "Internal error", so the role is removed first (removeClientRole failing only means it was not
 * there). disableClient disconnects the open connection (and refuses password logins, which
 * things do not use).
 */
export function revokeCommands(thingName: string): DynsecCommand[] {
  return [
    { command: "createClient", username: thingName, roles: [{ rolename: REVOKED_ROLE, priority: 1000 }] },
    { command: "removeClientRole", username: thingName, rolename: REVOKED_ROLE },
    { command: "addClientRole", username: thingName, rolename: REVOKED_ROLE, priority: 1000 },
    { command: "disableClient", username: thingName },
  ];
}

/** Makes sure the revoked role exists (a state file written before it existed, or edited by hand). */
export function ensureRevokedRoleCommands(): DynsecCommand[] {
  return [{ command: "createRole", rolename: REVOKED_ROLE, acls: revokedRoleAcls() }];
}

/** Errors that only say the command's effect is already there. */
export function isHarmless(command: string, error: string): boolean {
  return (
    (command === "createClient" && /already exists/i.test(error)) ||
    (command === "createRole" && /already exists/i.test(error)) ||
    command === "removeClientRole"
  );
}

export interface DynsecResponse {
  command: string;
  error?: string;
  correlationData?: string;
}

/** Parses a response document; throws Error when it is not one. */
export function parseDynsecResponses(payload: Buffer | string): DynsecResponse[] {
  const doc = JSON.parse(payload.toString()) as { responses?: unknown };
  if (!Array.isArray(doc?.responses)) throw new Error("not a dynamic-security response document");
  return doc.responses.filter((r): r is DynsecResponse => typeof r === "object" && r !== null && typeof (r as DynsecResponse).command === "string");
}
