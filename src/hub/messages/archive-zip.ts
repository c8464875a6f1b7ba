import ZipStream from "zip-stream";

/**
 * The zip of a message archive (`GET /things/{id}/archive`, `hub export`), written by zip-stream
 * (archiverjs; the writer inside `archiver`), which follows PKWARE's APPNOTE and adds the ZIP64
 * end records by itself once there are more than 65,535 entries or the archive passes 4 GiB.
 * This class only fixes the archive's settings and hands the bytes out at the caller's pace:
 *
 * - files are DEFLATEd at zlib level 6 (zlib, native in Bun and Node) with a data descriptor
 *   after each (zip-stream compresses as it writes); an empty file is stored;
 * - entries are "made by" Unix with mode 0644 for files and 0755 for folders;
 * - times are MS-DOS local date and time (2 s precision), as zip tools expect;
 * - names are written as given, flagged UTF-8 when they are not ASCII.
 *
 * Pace: entries go in one at a time (zip-stream refuses a second while one is being written),
 * and everything the writer produces is collected until the caller `take`s it. The caller
 * decides how much to add before handing bytes on, so a slow reader holds the producer to
 * whatever the caller adds between two reads (the archive: one page of messages).
 *
 * Memory: zip-stream keeps one entry object per file until `finish` (measured on Bun 1.4.5 with
 * the archive's 98-character names: about 500 bytes of heap per entry, 35 MB for 70,000; the
 * hand-written writer this replaced kept 145 packed bytes), and writes the central directory
 * at the end as about twenty small buffers per entry (about 1.1 KB of RSS per entry for a moment).
 * Each file also goes through its own zlib stream: the first large archive in a process leaves
 * it about 25 MB larger for good, once (measured in-process, 6,000 messages of 24 KB: peak RSS
 * +32 MB, against +7 MB with the one-shot zlib calls of the old writer; a second archive +7 MB).
 *
 * Why not yazl: its `pumpEntries` rescans every earlier entry each time one is written, so an
 * archive costs time in the square of its entries (70,000 took 14.5 s; an O(n) fix is open
 * upstream as thejoshwolfe/yazl#91), and `addBuffer` keeps every compressed file until the end.
 */
export class ArchiveZip {
  private readonly zip: ZipStream;
  private readonly out = new ChunkCollector();
  private failure: Error | undefined;
  private rejectPending: ((err: Error) => void) | undefined;
  private readonly ended: Promise<void>;
  private finishing = false;

  /** `mtime`: every entry's modification time */
  constructor(private readonly mtime: Date) {
    this.zip = new ZipStream({ zlib: { level: 6 }, forceLocalTime: true });
    // Flowing mode: the writer never waits for a reader, so adding an entry always completes;
    // the pace is the caller's (see above).
    this.zip.on("data", (chunk: Buffer) => this.out.push(chunk));
    this.ended = new Promise((resolve, reject) => {
      this.zip.once("end", resolve);
      this.zip.once("error", (err: Error) => {
        this.failure = err;
        this.rejectPending?.(err);
        reject(err);
      });
    });
    this.ended.catch(() => {}); // observed by the entry or `finish` that is waiting
  }

  /** Adds one file, mode 0644, `text` encoded as UTF-8. Throws what the writer throws. */
  file(name: string, text: string): Promise<void> {
    return this.add(text, { name, type: "file", date: this.mtime, mode: 0o644 });
  }

  /** Adds an empty folder, mode 0755; `name` ends with `/` or gets one. */
  directory(name: string): Promise<void> {
    return this.add(null, { name: name.endsWith("/") ? name : `${name}/`, type: "directory", date: this.mtime, mode: 0o755 });
  }

  /** The bytes written since the last call, as one chunk (empty when there are none). */
  take(): Uint8Array {
    return this.out.take();
  }

  /**
   * Writes the central directory and the end records and returns every byte not taken yet;
   * nothing may be added afterwards.
   */
  async finish(): Promise<Uint8Array> {
    if (this.failure) throw this.failure;
    this.finishing = true;
    this.zip.finalize();
    await this.ended;
    return this.take();
  }

  /** Stops the writer (a reader went away, or the data failed): what it holds is dropped. */
  destroy(): void {
    this.out.take();
    this.zip.destroy();
  }

  private add(source: string | null, data: Parameters<ZipStream["entry"]>[1]): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.finishing) return Promise.reject(new Error("the zip is already finished"));
    return new Promise((resolve, reject) => {
      this.rejectPending = reject;
      this.zip.entry(source, data, (err) => {
        this.rejectPending = undefined;
        if (err) reject(err);
        else resolve();
      });
    });
  }
}

/**
 * The writer's output gathered into blocks. zip-stream writes each header field as its own
 * small buffer (about twenty per entry, the whole central directory at once in `finish`):
 * copied into blocks as they come, each is garbage at once instead of being kept, with its
 * object, until the caller takes the bytes (measured for 70,000 entries: +150 MB of RSS at
 * `finish` when kept, +78 MB when copied).
 */
class ChunkCollector {
  private static readonly BLOCK = 256 * 1024;
  private blocks: Uint8Array[] = [];
  private current = new Uint8Array(ChunkCollector.BLOCK);
  private used = 0;

  push(chunk: Uint8Array): void {
    if (chunk.length >= ChunkCollector.BLOCK / 4) {
      this.seal();
      this.blocks.push(chunk); // large enough to keep as it is (a deflated file)
      return;
    }
    if (this.used + chunk.length > this.current.length) this.seal();
    this.current.set(chunk, this.used);
    this.used += chunk.length;
  }

  /** everything pushed since the last call, as one chunk */
  take(): Uint8Array {
    this.seal();
    const blocks = this.blocks;
    this.blocks = [];
    return blocks.length === 1 ? blocks[0]! : Buffer.concat(blocks);
  }

  private seal(): void {
    if (this.used === 0) return;
    this.blocks.push(this.current.slice(0, this.used));
    this.used = 0;
  }
}
