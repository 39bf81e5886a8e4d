/**
 * What the helpers that start real servers as child processes (redis-server,
 * slapd, tinyproxy, microsocks, the bench's references) share: a free
 * loopback port, whether something accepts on one, and a test CA with a
 * server certificate for 127.0.0.1 and localhost made by `openssl`.
 *
 * @module
 */
import { join } from "node:path";

/** A port that was free a moment ago, for a child process to listen on. */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** True when something accepts a connection on 127.0.0.1:`port` now. */
export async function accepts(port: number): Promise<boolean> {
  try {
    const c = await Deno.connect({ hostname: "127.0.0.1", port });
    c.close();
    return true;
  } catch {
    return false;
  }
}

async function openssl(args: string[]): Promise<void> {
  const { code, stderr } = await new Deno.Command("openssl", {
    args,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
  if (code !== 0) {
    throw new Error(
      `openssl ${args.join(" ")} exited with ${code}:\n${
        new TextDecoder().decode(stderr)
      }`,
    );
  }
}

/**
 * Writes into `dir` a test CA (`ca.pem`, `ca.key`) and a server
 * certificate it signed (`server.pem`, `server.key`) for IP 127.0.0.1 and
 * DNS localhost, P-256 keys, valid two days.
 */
export async function makeTestCertificates(dir: string): Promise<void> {
  const p = (name: string) => join(dir, name);
  await Deno.writeTextFile(
    p("server.ext"),
    "basicConstraints=critical,CA:FALSE\n" +
      "keyUsage=critical,digitalSignature,keyEncipherment\n" +
      "extendedKeyUsage=serverAuth\n" +
      "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
  );
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  await openssl([
    "req",
    "-x509",
    ...ec,
    "-keyout",
    p("ca.key"),
    "-out",
    p("ca.pem"),
    "-days",
    "2",
    "-subj",
    "/CN=pmproxy test CA",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ]);
  await openssl([
    "req",
    ...ec,
    "-keyout",
    p("server.key"),
    "-out",
    p("server.csr"),
    "-subj",
    "/CN=localhost",
  ]);
  await openssl([
    "x509",
    "-req",
    "-in",
    p("server.csr"),
    "-CA",
    p("ca.pem"),
    "-CAkey",
    p("ca.key"),
    "-CAcreateserial",
    "-out",
    p("server.pem"),
    "-days",
    "2",
    "-extfile",
    p("server.ext"),
  ]);
}
