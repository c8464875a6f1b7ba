/**
 * The refusal of a database at schema `version` by a binary that knows `latest`, which the
 * binary that migrated it said only `readableFrom` and later may use (undefined: it said
 * nothing). It names the two ways on: a binary that knows the schema, or the database as it was
 * before the upgrade (a backup), never only "upgrade" to someone who just rolled back.
 */
export function newerSchema(name: string, version: number, latest: number, readableFrom: number | undefined): string {
  const says = readableFrom === undefined ? "" : `, and the flashlex that migrated it lets only those that know schema version ${readableFrom} or later use it`;
  return `${name}: schema version ${version} is newer than this flashlex knows (${latest})${says}; run a flashlex that knows it, or put the database back as it was before the upgrade (a rollback cannot go back past such a schema change)`;
}
