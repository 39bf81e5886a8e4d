/**
 * A local origin server for tests: answers `/bytes/N` with N bytes,
 * `/chunked/N` with N bytes in chunked encoding, `/hello` with "hello",
 * `/upload` (any method with a body) with the number of bytes it received.
 *
 * @module
 */

/** A running origin. */
export interface Origin {
  port: number;
  url: string;
  /** Requests served so far. */
  requests: number;
  close(): Promise<void>;
}

const BLOCK = new Uint8Array(64 * 1024).fill(120);

function bytesBody(total: number): ReadableStream<Uint8Array> {
  let sent = 0;
  return new ReadableStream({
    pull(controller) {
      if (sent >= total) return controller.close();
      const n = Math.min(BLOCK.length, total - sent);
      controller.enqueue(BLOCK.subarray(0, n));
      sent += n;
    },
  });
}

/** Starts an origin on 127.0.0.1 on a free port. */
export function startOrigin(): Origin {
  const origin: Origin = {
    port: 0,
    url: "",
    requests: 0,
    close: () => server.shutdown(),
  };
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (req) => {
      origin.requests++;
      const path = new URL(req.url).pathname;
      const bytes = /^\/bytes\/(\d+)$/.exec(path);
      if (bytes) {
        const n = Number(bytes[1]);
        return new Response(bytesBody(n), {
          headers: { "content-length": String(n) },
        });
      }
      const chunked = /^\/chunked\/(\d+)$/.exec(path);
      if (chunked) return new Response(bytesBody(Number(chunked[1])));
      if (path === "/hello") return new Response("hello\n");
      if (path === "/upload") {
        // A body cut on its way (a quota) is no error of the origin's.
        return req.arrayBuffer().then(
          (body) => new Response(`${body.byteLength}\n`),
          () => new Response("the body was cut\n", { status: 400 }),
        );
      }
      return new Response("not found\n", { status: 404 });
    },
  );
  origin.port = server.addr.port;
  origin.url = `http://127.0.0.1:${server.addr.port}`;
  return origin;
}

/** Runs curl and answers its exit code, body and stderr. */
export async function curl(
  args: string[],
): Promise<{ code: number; body: string; stderr: string }> {
  const out = await new Deno.Command("curl", {
    args: ["-sS", "--max-time", "30", ...args],
  }).output();
  const decoder = new TextDecoder();
  return {
    code: out.code,
    body: decoder.decode(out.stdout),
    stderr: decoder.decode(out.stderr),
  };
}
