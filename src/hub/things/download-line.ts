import { createHash, X509Certificate } from "node:crypto";
import { readRegularFile } from "../../shared/regular-file.ts";
import { shellWord } from "../../shared/shell-word.ts";
import type { HubPaths } from "../home/paths.ts";
import type { HubSettings } from "../home/settings.ts";

/**
 * What the line says on the device when the download fails (`name`: the thing's): curl -f shows
 * only "error: 401" for a line already used or past its time, and any other failure (the hub
 * unreachable, no curl) leaves the line good for another try. Single-quoted in the line, so no '
 * in it, and no ! (tcsh expands it even there). On stdout: tcsh has no >&2, and /dev/stderr cannot
 * be opened when stderr is a socket.
 */
function downloadFailed(name: string): string {
  return `the download failed (the line above says why): a 401 means this line was used or is past its time, so ask the hub operator for a new one (flashlex hub thing dist ${name} --curl); after any other error, run the same line again`;
}

/**
 * The guide's cURL line that downloads a thing's distribution zip on the thing itself, as the
 * CLI (`hub thing dist --curl`) and the console's thing page print it, in a subshell with umask
 * 077 so that the zip, which holds the thing's private key, is saved readable by its user alone.
 * It is saved as `<name>.zip.part`, a new file, then renamed over `<name>.zip`: curl writing into
 * a `<name>.zip` already there (0644, from an earlier copy) kept that file's mode, key and all;
 * and a refused download (curl -f) leaves a zip already there as it was, says why a line may be
 * refused (downloadFailed) and exits 1. The token reaches curl on stdin (`-H @-`, curl 7.55
 * and later) from the shell's own echo (a builtin of sh, dash, bash,
 * busybox, mksh, zsh and tcsh alike; mksh's and tcsh's printf is /usr/bin/printf): in a
 * command's arguments any user of the device could read it in `ps` while it runs, and fetch the
 * key first. The URL is quoted when it must be (an IPv6 hub's `[::1]` is a glob in zsh).
 *
 * An `https://` hub answers with its own certificate (the broker's, signed by the hub CA), which
 * a fresh Pi does not trust: curl would fail (exit 60) and the user's next move would be `-k`,
 * sending the operator token to whoever answers. So for HTTPS the line pins the hub's public key
 * (`--pinnedpubkey sha256//...`, checked by curl whether or not the chain is verified): the
 * token reaches this hub or nobody. Takes the thing's name and id, the Authorization value to
 * show (a `$VARIABLE` or the token itself), the hub's settings and paths; throws what reading the
 * certificate throws (a hub home without it cannot serve HTTPS either).
 */
export function distributionDownloadLine(
  thing: { id: string; name: string },
  bearer: string,
  hub: { settings: Pick<HubSettings, "api" | "env">; paths: Pick<HubPaths, "brokerCert"> },
): string {
  const base = hub.settings.api.publicUrl.replace(/\/+$/, "");
  const url = `${base}/${hub.settings.env}/v1/things/${thing.id}/dist`;
  const tls = url.startsWith("https://")
    ? ` -k --pinnedpubkey 'sha256//${publicKeyPin(readRegularFile(hub.paths.brokerCert, "broker certificate").toString("utf8"))}'`
    : "";
  // the zip holds the thing's private key: saved 0600, not as the umask (0644) would have it
  const zip = `${thing.name}.zip`;
  return `(umask 077; echo 'Authorization: Bearer ${bearer}' | curl -fo ${zip}.part${tls} -H @- ${shellWord(url)} && mv -f ${zip}.part ${zip} || (echo '${downloadFailed(thing.name)}'; exit 1))`;
}

/** The SHA-256 of a certificate's SubjectPublicKeyInfo (DER), base64: curl's --pinnedpubkey form (RFC 7469 §2.4). */
export function publicKeyPin(certPem: string): string {
  const spki = new X509Certificate(certPem).publicKey.export({ type: "spki", format: "der" });
  return createHash("sha256").update(spki).digest("base64");
}
