/**
 * Loaded before every test file (bunfig.toml `[test] preload`): hooks here are global, run once
 * for the whole `bun test` process.
 */
import { afterAll } from "bun:test";
import { removeScratchDirs } from "./support/scratch.ts";

afterAll(removeScratchDirs);
