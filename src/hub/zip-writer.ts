import { gzipSync } from "node:zlib";

/**
 * A ZIP writer that hands out bytes as it goes, for archives too large to build in memory
 * (the message archive and `hub export`). It follows PKWARE's APPNOTE 6.3.10: each file is a local
 * header with its CRC-32 and sizes followed by its data (no data descriptors: a file is compressed
 * whole before its header is written), then the central directory and the end record, with the
 * ZIP64 end records (APPNOTE 4.3.14-4.3.15, 4.5.3) once there are more than 65,535 entries or the
 * archive passes 4 GiB.
 *
 * Why not fflate's streaming `Zip`: it keeps about 1 KB of objects and closures per entry until
 * the end (measured: 60 MB for 60,000 entries), as much as the data for small messages, and it
 * writes neither the ZIP64 records nor correct counts past 65,535 entries. The compression and the
 * CRC-32 come from zlib (node:zlib, native in Bun and Node; fflate's pure-JS deflate left the hub
 * 20 MB larger over a 40 MB archive): this file only lays out the records.
 *
 * Memory: the central directory is kept until `finish`, as packed bytes in 1 MiB blocks (never
 * copied to grow): 46 bytes plus the name (plus 12 past 4 GiB) per entry, about 145 bytes for
 * a message. Nothing else is kept from one file to the next.
 */
export interface ZipEntryOptions {
  /** stored as an MS-DOS local date and time (2 s precision), as zip tools expect */
  mtime: Date;
  /** Unix mode bits without the type, e.g. 0o644; default 0o644 for files, 0o755 for folders */
  mode?: number;
}

const LOCAL_HEADER = 0x04034b50;
const CENTRAL_HEADER = 0x02014b50;
const END_OF_CENTRAL_DIRECTORY = 0x06054b50;
const ZIP64_END_OF_CENTRAL_DIRECTORY = 0x06064b50;
const ZIP64_LOCATOR = 0x07064b50;
const ZIP64_EXTRA = 0x0001;
/** "made by" Unix (3), so the external attributes carry a Unix mode */
const MADE_BY_UNIX = 3 << 8;
const VERSION_DEFLATE = 20;
const VERSION_ZIP64 = 45;
const STORED = 0;
const DEFLATED = 8;
const UTF8_NAMES = 1 << 11;
const MAX_16 = 0xffff;
const MAX_32 = 0xffffffff;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const MSDOS_DIRECTORY = 0x10;

export class ZipWriter {
  private written = 0;
  private count = 0;
  private readonly central = new BlockList();
  private finished = false;

  /** bytes handed out so far */
  get size(): number {
    return this.written;
  }

  /** entries added so far */
  get entries(): number {
    return this.count;
  }

  /**
   * One whole file: returns its local header and data (DEFLATE at level 6, or stored when that
   * is not smaller), to be written in order after what earlier calls returned.
   */
  file(name: string, data: Uint8Array, opts: ZipEntryOptions): Uint8Array {
    // gzip = the raw DEFLATE stream between a 10-byte header (zlib writes no file name) and a
    // trailer of CRC-32 and size (RFC 1952, 2.3): zlib's CRC-32, and no hand-written checksum.
    // (zlib.crc32 would do, but Node 20, the armv7 runtime, does not have it.)
    const gz = gzipSync(data, { level: 6 });
    const crc = readU32(gz, gz.length - 8);
    const deflated = gz.subarray(10, gz.length - 8);
    const method = deflated.length < data.length ? DEFLATED : STORED;
    const body = method === DEFLATED ? deflated : data;
    const mode = S_IFREG | ((opts.mode ?? 0o644) & 0o7777);
    return this.entry(name, body, { crc, size: data.length, method, attrs: (mode << 16) >>> 0, mtime: opts.mtime });
  }

  /** An empty folder entry; `name` ends with `/`. */
  directory(name: string, opts: ZipEntryOptions): Uint8Array {
    const mode = S_IFDIR | ((opts.mode ?? 0o755) & 0o7777);
    return this.entry(name.endsWith("/") ? name : `${name}/`, new Uint8Array(), { crc: 0, size: 0, method: STORED, attrs: ((mode << 16) | MSDOS_DIRECTORY) >>> 0, mtime: opts.mtime });
  }

  /**
   * The central directory and end records, in order; nothing may be added afterwards. The
   * directory comes back as the blocks it was kept in, not copied into one buffer.
   */
  finish(): Uint8Array[] {
    if (this.finished) throw new Error("the zip is already finished");
    this.finished = true;
    const directoryOffset = this.written;
    const directoryLength = this.central.size;
    const zip64 = this.count > MAX_16 || directoryOffset > MAX_32 || directoryLength > MAX_32;
    const tail = new ByteBuffer(98);
    if (zip64) {
      const recordOffset = directoryOffset + directoryLength;
      tail.u32(ZIP64_END_OF_CENTRAL_DIRECTORY).u64(44).u16(MADE_BY_UNIX | VERSION_ZIP64).u16(VERSION_ZIP64);
      tail.u32(0).u32(0).u64(this.count).u64(this.count).u64(directoryLength).u64(directoryOffset);
      tail.u32(ZIP64_LOCATOR).u32(0).u64(recordOffset).u32(1);
    }
    tail.u32(END_OF_CENTRAL_DIRECTORY).u16(0).u16(0);
    tail.u16(Math.min(this.count, MAX_16)).u16(Math.min(this.count, MAX_16));
    tail.u32(Math.min(directoryLength, MAX_32)).u32(Math.min(directoryOffset, MAX_32)).u16(0);
    const parts = [...this.central.blocks(), tail.bytes()];
    this.written += directoryLength + tail.size;
    return parts;
  }

  private entry(name: string, body: Uint8Array, e: { crc: number; size: number; method: number; attrs: number; mtime: Date }): Uint8Array {
    if (this.finished) throw new Error("the zip is already finished");
    const nameBytes = new TextEncoder().encode(name);
    if (nameBytes.length > MAX_16) throw new Error("a zip entry name is at most 65,535 bytes");
    const flags = nameBytes.length !== name.length ? UTF8_NAMES : 0;
    const { time, date } = dosDateTime(e.mtime);
    const offset = this.written;

    const local = new ByteBuffer(30 + nameBytes.length + body.length);
    local.u32(LOCAL_HEADER).u16(VERSION_DEFLATE).u16(flags).u16(e.method).u16(time).u16(date);
    local.u32(e.crc).u32(body.length).u32(e.size).u16(nameBytes.length).u16(0);
    local.append(nameBytes).append(body);

    // Sizes of one message never reach 4 GiB; the offset of a late entry may.
    const bigOffset = offset > MAX_32;
    const record = new ByteBuffer(46 + nameBytes.length + (bigOffset ? 12 : 0));
    record.u32(CENTRAL_HEADER).u16(MADE_BY_UNIX | (bigOffset ? VERSION_ZIP64 : VERSION_DEFLATE));
    record.u16(bigOffset ? VERSION_ZIP64 : VERSION_DEFLATE).u16(flags).u16(e.method).u16(time).u16(date);
    record.u32(e.crc).u32(body.length).u32(e.size).u16(nameBytes.length).u16(bigOffset ? 12 : 0);
    record.u16(0).u16(0).u16(0).u32(e.attrs).u32(bigOffset ? MAX_32 : offset);
    record.append(nameBytes);
    if (bigOffset) record.u16(ZIP64_EXTRA).u16(8).u64(offset);
    this.central.append(record.bytes());

    const bytes = local.bytes();
    this.written += bytes.length;
    this.count++;
    return bytes;
  }
}

/** MS-DOS date and time fields; dates outside 1980-2107 are clamped to the nearest end. */
function dosDateTime(at: Date): { time: number; date: number } {
  const year = at.getFullYear();
  if (year < 1980) return { time: 0, date: (1 << 5) | 1 };
  if (year > 2107) return { time: (23 << 11) | (59 << 5) | 29, date: (127 << 9) | (12 << 5) | 31 };
  return {
    time: (at.getHours() << 11) | (at.getMinutes() << 5) | (at.getSeconds() >> 1),
    date: ((year - 1980) << 9) | ((at.getMonth() + 1) << 5) | at.getDate(),
  };
}

function readU32(bytes: Uint8Array, at: number): number {
  return (bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16) | (bytes[at + 3]! << 24)) >>> 0;
}

/**
 * Bytes kept in fixed blocks: appending never copies what is already there, so a long central
 * directory does not leave the freed halves of a doubling buffer behind in the allocator.
 */
class BlockList {
  private static readonly BLOCK = 1024 * 1024;
  private readonly full: Uint8Array[] = [];
  private current = new Uint8Array(BlockList.BLOCK);
  private used = 0;
  private total = 0;

  get size(): number {
    return this.total;
  }

  append(bytes: Uint8Array): void {
    let from = 0;
    while (from < bytes.length) {
      if (this.used === this.current.length) {
        this.full.push(this.current);
        this.current = new Uint8Array(BlockList.BLOCK);
        this.used = 0;
      }
      const n = Math.min(bytes.length - from, this.current.length - this.used);
      this.current.set(bytes.subarray(from, from + n), this.used);
      this.used += n;
      from += n;
    }
    this.total += bytes.length;
  }

  blocks(): Uint8Array[] {
    return [...this.full, this.current.subarray(0, this.used)];
  }
}

/** Little-endian bytes appended to a buffer that doubles when full (for one record or one file). */
class ByteBuffer {
  private buffer: Uint8Array;
  private view: DataView;
  private length = 0;

  constructor(capacity = 1024) {
    this.buffer = new Uint8Array(capacity);
    this.view = new DataView(this.buffer.buffer);
  }

  /** Makes room for `n` more bytes and returns where they go (read the view only after). */
  private reserve(n: number): number {
    const at = this.length;
    if (at + n > this.buffer.length) {
      const next = new Uint8Array(Math.max(this.buffer.length * 2, at + n));
      next.set(this.buffer.subarray(0, at));
      this.buffer = next;
      this.view = new DataView(next.buffer);
    }
    this.length += n;
    return at;
  }

  u16(value: number): this {
    const at = this.reserve(2);
    this.view.setUint16(at, value, true);
    return this;
  }

  u32(value: number): this {
    const at = this.reserve(4);
    this.view.setUint32(at, value >>> 0, true);
    return this;
  }

  u64(value: number): this {
    const at = this.reserve(8);
    this.view.setBigUint64(at, BigInt(value), true);
    return this;
  }

  append(bytes: Uint8Array): this {
    const at = this.reserve(bytes.length);
    this.buffer.set(bytes, at);
    return this;
  }

  /** bytes so far */
  get size(): number {
    return this.length;
  }

  /** a view of the bytes so far (the buffer itself when it is exactly full) */
  bytes(): Uint8Array {
    return this.buffer.subarray(0, this.length);
  }
}
