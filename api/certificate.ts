/**
 * The API's TLS certificate: read it, or, when the certificate or the key
 * file is missing, generate a self-signed ECDSA P-256 leaf certificate
 * (CA:FALSE, serverAuth) naming this machine, and write both files.
 *
 * A leaf, not a CA: clients pin it as their only trust anchor (the CLI
 * through `node:tls` `ca`, `curl --cacert`), and TLS libraries refuse a CA
 * certificate used as a server's own.
 *
 * @module
 */
import { dirname } from "../managers/mod.ts";

/** A certificate and its private key, both PEM. */
export interface CertificatePair {
  certPem: string;
  keyPem: string;
  /** True when this call generated and wrote them. */
  generated: boolean;
}

/** The names a generated certificate covers for a server on `hosts`. */
export function certificateNames(hosts: string[] = []): string[] {
  let hostname = "localhost";
  try {
    hostname = Deno.hostname();
  } catch {
    // no permission or no name: localhost only
  }
  const names = ["localhost", hostname, "127.0.0.1", "::1", ...hosts];
  return [
    ...new Set(names.filter((n) => n !== "" && n !== "::" && n !== "0.0.0.0")),
  ];
}

/**
 * Generates a self-signed ECDSA P-256 leaf certificate for `names` (DNS
 * names and IP addresses), valid from yesterday for ten years.
 */
export async function generateCertificate(
  names: string[],
): Promise<{ certPem: string; keyPem: string }> {
  const { selfSigned } = await import("./_self_signed.ts");
  return await selfSigned(names);
}

async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

/**
 * Reads the certificate and key files; when either is missing, generates a
 * new pair for `options.hosts` (plus localhost, this machine's name,
 * 127.0.0.1 and ::1) and writes both (the key with mode 0600).
 */
export async function ensureCertificate(
  certFile: string,
  keyFile: string,
  options: { hosts?: string[] } = {},
): Promise<CertificatePair> {
  const certPem = await readIfExists(certFile);
  const keyPem = await readIfExists(keyFile);
  if (certPem !== undefined && keyPem !== undefined) {
    return { certPem, keyPem, generated: false };
  }
  const pair = await generateCertificate(certificateNames(options.hosts));
  await Deno.mkdir(dirname(certFile), { recursive: true });
  await Deno.mkdir(dirname(keyFile), { recursive: true });
  await Deno.writeTextFile(keyFile, pair.keyPem, { mode: 0o600 });
  await Deno.chmod(keyFile, 0o600);
  await Deno.writeTextFile(certFile, pair.certPem);
  return { ...pair, generated: true };
}
