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
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { dirname } from "node:path";

/** A certificate and its private key, both PEM. */
export interface CertificatePair {
  certPem: string;
  keyPem: string;
  /** True when this call generated and wrote them. */
  generated: boolean;
}

const ALGORITHM = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };

function toPem(label: string, der: ArrayBuffer): string {
  const b64 = btoa(String.fromCharCode(...new Uint8Array(der)));
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${
    lines.join("\n")
  }\n-----END ${label}-----\n`;
}

function isIp(host: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(host) || host.includes(":");
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
  x509.cryptoProvider.set(crypto);
  const keys = await crypto.subtle.generateKey(ALGORITHM, true, [
    "sign",
    "verify",
  ]) as CryptoKeyPair;
  const serial = Array.from(
    crypto.getRandomValues(new Uint8Array(16)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    // A positive serial: clear the top bit.
    serialNumber: (parseInt(serial[0], 16) & 7).toString(16) + serial.slice(1),
    name: `CN=${names[1] ?? "localhost"}, O=pmproxy`,
    notBefore: new Date(now - 24 * 3600_000),
    notAfter: new Date(now + 10 * 365 * 24 * 3600_000),
    signingAlgorithm: ALGORITHM,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(
        names.map((n) =>
          isIp(n) ? { type: "ip" as const, value: n } : {
            type: "dns" as const,
            value: n,
          }
        ),
      ),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const pkcs8 = await crypto.subtle.exportKey("pkcs8", keys.privateKey);
  return {
    certPem: cert.toString("pem") + "\n",
    keyPem: toPem("PRIVATE KEY", pkcs8),
  };
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
