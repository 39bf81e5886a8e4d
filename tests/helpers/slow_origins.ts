/**
 * Origins for tests of what happens while transfers are under way: one
 * that sends its body slowly, one that echoes a tunnel's bytes.
 *
 * @module
 */
import {
  type RawOrigin,
  readRequestHead,
  startRawOrigin,
  writeText,
} from "./proxy_kit.ts";

/** The size of one piece of {@link slowOrigin}'s body. */
export const PIECE = 20_000;

/**
 * An origin that sends `pieces` pieces of {@link PIECE} bytes, `gapMs`
 * apart; it tells `started` when the head is out. `bytes` is what a client
 * reads, head included.
 */
export function slowOrigin(pieces: number, gapMs: number) {
  const started = Promise.withResolvers<void>();
  const head =
    `HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: ${
      pieces * PIECE
    }\r\n\r\n`;
  const origin = startRawOrigin(async (conn) => {
    await readRequestHead(conn);
    await writeText(conn, head);
    started.resolve();
    for (let i = 0; i < pieces; i++) {
      await new Promise((r) => setTimeout(r, gapMs));
      await writeText(conn, "s".repeat(PIECE));
    }
  });
  return {
    origin,
    started: started.promise,
    bytes: head.length + pieces * PIECE,
  };
}

/** An origin that echoes what it reads (a tunnel's other end). */
export function echoOrigin(): RawOrigin {
  return startRawOrigin(async (conn) => {
    const buf = new Uint8Array(4096);
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) return;
      await writeText(conn, buf.subarray(0, n));
    }
  });
}
