/**
 * The byte pump of tunnels: two manual read loops, one per direction, over
 * pooled buffers that grow only for bulk data. A manual loop (not `pipeTo`)
 * because it is the one measured to be fastest and the only one that passes
 * a half-close: when one side sends FIN we `closeWrite()` the other and keep
 * the opposite direction flowing until it ends too.
 *
 * @module
 */
import {
  closeQuietly,
  MeterStop,
  type Reader,
  type Stream,
  writeAll,
} from "./_io.ts";
import { TINY } from "./_buffers.ts";

/** What a relay moved, and how it ended. */
export interface RelayResult {
  /** Bytes from the client to upstream. */
  up: number;
  /** Bytes from upstream to the client. */
  down: number;
  /** Set when the meter cut the tunnel. */
  stopped?: string;
}

/**
 * Pumps bytes both ways until both directions ended, then closes both sockets.
 * Bytes already buffered in either reader (sent right after a CONNECT head or
 * a 101 response) go first. Metering happens in `upstream.took()`; a STOP
 * closes both sockets at once (the original only stalled the tunnel).
 */
export function relay(
  client: Reader,
  upstream: Reader,
): Promise<RelayResult> {
  const result: RelayResult = { up: 0, down: 0 };
  // A tunnel mostly waits: it waits with a small buffer, and a read that
  // fills it moves up (see Reader.fill).
  client.shrink(TINY);
  upstream.shrink(TINY);
  const closeBoth = () => {
    closeQuietly(client.conn);
    closeQuietly(upstream.conn);
  };
  const pump = async (src: Reader, dst: Stream, down: boolean) => {
    try {
      for (;;) {
        if (src.buffered === 0) {
          // Read here, not through src.fill(): one async frame less per
          // direction of a tunnel that waits (thousands may be held).
          const view = src.readView();
          if (view === undefined) {
            if (!(await src.fill())) break;
          } else {
            const took = src.took(await src.conn.read(view), view);
            if (took === false || (took !== true && !(await took))) break;
          }
        }
        const part = src.take(src.buffered);
        await writeAll(dst, part);
        if (down) result.down += part.length;
        else result.up += part.length;
      }
      // Pass the FIN on, keep the other direction open.
      await dst.closeWrite();
    } catch (e) {
      if (e instanceof MeterStop) result.stopped = e.message;
      // A broken or cut direction ends the tunnel: nothing can be resumed.
      closeBoth();
    }
  };
  // A counter rather than an async function awaiting Promise.all: less for
  // each held tunnel to keep alive while it waits.
  return new Promise((resolve) => {
    let running = 2;
    const ended = () => {
      if (--running > 0) return;
      closeBoth();
      resolve(result);
    };
    // A pump never rejects: it ends its direction on any error.
    pump(client, upstream.conn, false).then(ended);
    pump(upstream, client.conn, true).then(ended);
  });
}
