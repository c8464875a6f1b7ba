import type { SqlDatabase } from "./driver.ts";

/**
 * Forward-only migrations keyed by `PRAGMA user_version`: migration N brings the schema from
 * version N-1 to N, each in its own transaction. A database newer than this binary is refused
 * rather than guessed at.
 */
export function migrate(db: SqlDatabase, migrations: readonly string[], name: string): number {
  const current = db.get<{ user_version: number }>("PRAGMA user_version")!.user_version;
  if (current > migrations.length) {
    throw new Error(`${name} has schema version ${current}, newer than this flashlex knows (${migrations.length}); upgrade flashlex`);
  }
  for (let version = current + 1; version <= migrations.length; version++) {
    db.transaction(() => {
      db.exec(migrations[version - 1]!);
      db.exec(`PRAGMA user_version = ${version}`);
    });
  }
  return migrations.length;
}

/**
 * WAL lets a reader (an application, `flashlex messages`) work while `serve` writes.
 * synchronous=FULL makes every commit survive a power cut, which is what a Pi with an SD card
 * sees most; see bench/ for what it costs.
 */
export function applyPragmas(db: SqlDatabase): void {
  db.exec("PRAGMA busy_timeout = 5000");
  const mode = db.get<{ journal_mode: string }>("PRAGMA journal_mode = WAL")?.journal_mode;
  if (mode !== "wal") throw new Error(`the database refused WAL mode (journal_mode=${mode})`);
  db.exec("PRAGMA synchronous = FULL");
}
