/**
 * Reading pmproxy's `/metrics` in tests: scraping the real HTTPS API with
 * its certificate pinned, reading one sample's value, and judging the text
 * with a real consumer, `promtool check metrics` (Debian's prometheus).
 *
 * @module
 */
import { join } from "node:path";

/** Runs `promtool check metrics` on `text`: its exit code and what it said. */
export async function promtool(
  text: string,
): Promise<{ code: number; out: string }> {
  const child = new Deno.Command("promtool", {
    args: ["check", "metrics"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  const out = await child.output();
  const d = new TextDecoder();
  return { code: out.code, out: d.decode(out.stdout) + d.decode(out.stderr) };
}

/**
 * GETs `path` (default `/metrics`) of the API at `apiUrl`, trusting only
 * the certificate in `configDir`/cert.pem.
 */
export async function scrape(
  apiUrl: string,
  configDir: string,
  path = "/metrics",
): Promise<{ status: number; text: string }> {
  const cert = await Deno.readTextFile(join(configDir, "cert.pem"));
  const client = Deno.createHttpClient({ caCerts: [cert] });
  try {
    const res = await fetch(`${apiUrl}${path}`, { client });
    return { status: res.status, text: await res.text() };
  } finally {
    client.close();
  }
}

/**
 * The value of the sample `name{labels}` (labels as written, e.g.
 * `outcome="allowed"`); undefined when there is none.
 */
export function sample(
  text: string,
  name: string,
  labels = "",
): number | undefined {
  const head = labels === "" ? name : `${name}{${labels}}`;
  for (const line of text.split("\n")) {
    if (line.startsWith(`${head} `)) return Number(line.slice(head.length + 1));
  }
  return undefined;
}
