/**
 * The self-signed certificate generator behind `certificate.ts`, in a
 * module of its own because its X.509 library (with reflect-metadata)
 * takes some 20 MiB once loaded: it is loaded only when a certificate must
 * be made (the first start), never by a server whose files exist.
 *
 * @module
 */
import "reflect-metadata";
import * as x509 from "@peculiar/x509";

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

/**
 * Generates a self-signed ECDSA P-256 leaf certificate for `names` (DNS
 * names and IP addresses), valid from yesterday for ten years.
 */
export async function selfSigned(
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
